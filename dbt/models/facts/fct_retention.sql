{#- Retention: each activity event of a visitor with a known first visit, with its cohort. -#}
select
    event_id,
    visitor_id,
    event_time,
    event_day,
    first_day,
    event_day - first_day as days_since_first,
    event_day > first_day as return_visit,
    (first_day + 3) // 7 * 7 - 3 as cohort_week,
    case when event_day >= first_day then (event_day - first_day) // 7 else -1 end as weeks_since_first
from {{ ref('fct_visitor_activity') }}
where first_day is not null
