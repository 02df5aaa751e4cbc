{#- Consideration: page views of each content by subscribed visitors, per hour. -#}
select
    content_id,
    {{ hour_window_ms('event_time') }} as window_start_ms,
    count(*) as views,
    count(distinct visitor_id) as viewers
from {{ ref('fct_visitor_activity') }}
where subscribed and event_type = 'page_view' and content_id is not null
group by all
