{#- Loyalty: per cohort week, its size and the visitors active in weeks 0-3 after their first
    visit. -#}
with cohorts as (
    select
        cohort_week,
        count(distinct visitor_id) as cohort_size,
        [
            count(distinct visitor_id) filter (where weeks_since_first = 0),
            count(distinct visitor_id) filter (where weeks_since_first = 1),
            count(distinct visitor_id) filter (where weeks_since_first = 2),
            count(distinct visitor_id) filter (where weeks_since_first = 3)
        ] as retained
    from {{ ref('fct_retention') }}
    group by cohort_week
)
select
    cohort_week,
    cohort_size,
    retained,
    list_transform(retained, lambda r: r::double / cohort_size) as retention_rate
from cohorts
