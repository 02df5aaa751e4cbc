{#- Awareness: distinct visitors (and events) per visitor source and hour. -#}
select
    visitor_source,
    {{ hour_window_ms('event_time') }} as window_start_ms,
    count(distinct visitor_id) as visitors,
    count(*) as events
from {{ ref('fct_visitor_activity') }}
group by all
