{#- Consideration top-N: the 5 most viewed contents among subscribers per hour (ties: smaller
    content id first), as a list of {value: content id, score: views}. -#}
with ranked as (
    select
        window_start_ms, content_id, views,
        row_number() over (partition by window_start_ms order by views desc, content_id) as rank
    from {{ ref('funnel_consideration') }}
)
select
    window_start_ms,
    list({'value': content_id, 'score': views} order by rank) as top_content
from ranked
where rank <= 5
group by window_start_ms
