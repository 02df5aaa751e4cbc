{#- Advocacy: mentions, mean sentiment and counts per category, per outlet and hour. -#}
select
    outlet_id,
    {{ hour_window_ms('event_time') }} as window_start_ms,
    count(*) as mentions,
    avg(sentiment_score::double) as avg_sentiment,
    count(*) filter (where sentiment_category = 'positive') as positive,
    count(*) filter (where sentiment_category = 'neutral') as neutral,
    count(*) filter (where sentiment_category = 'negative') as negative
from {{ ref('fct_social_sentiment') }}
group by all
