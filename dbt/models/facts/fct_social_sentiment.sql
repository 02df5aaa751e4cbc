{#- Social sentiment: each mention with its outlet's version at the mention's time. -#}
select
    m.mention_id,
    m.outlet_id,
    coalesce(o.outlet_name, 'unknown') as outlet_name,
    o.sentiment_category as outlet_sentiment_category,
    m.sentiment_score,
    case
        when m.sentiment_score >= 0.25 then 'positive'
        when m.sentiment_score <= -0.25 then 'negative'
        else 'neutral'
    end as sentiment_category,
    m.event_time
from {{ ref('stg_social_mentions') }} m
left join {{ ref('dim_social_outlet_versions') }} o
    on o.outlet_id = m.outlet_id and not o.deleted
    and o.committed_at <= m.event_time and (o.valid_to is null or m.event_time < o.valid_to)
