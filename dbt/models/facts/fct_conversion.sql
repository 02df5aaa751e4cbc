{#- Conversion: each ad / affiliate click (converted = false), and each subscription create
    attributed to the visitor's last click at or before it, within 7 days (converted = true). -#}
with clicks as (
    select event_id, visitor_id, ad_id, campaign, ad_source, event_time as click_time, event_day as click_day
    from {{ ref('fct_visitor_activity') }}
    where event_type in ('ad_click', 'affiliate_click')
),
creates as (
    select visitor_id, subscription_id, committed_at as conversion_time
    from {{ ref('dim_subscription_by_visitor') }}
    where op = 'c'
),
last_click as (
    select
        c.*, s.subscription_id, s.conversion_time,
        row_number() over (
            partition by s.visitor_id, s.subscription_id, s.conversion_time
            order by c.click_time desc
        ) as recency
    from creates s
    join clicks c on c.visitor_id = s.visitor_id and c.click_time <= s.conversion_time
)
select event_id, visitor_id, ad_id, campaign, ad_source, click_time, click_day,
       false as converted, null::bigint as subscription_id, null::timestamp as conversion_time
from clicks
union all
select event_id, visitor_id, ad_id, campaign, ad_source, click_time, click_day,
       true as converted, subscription_id, conversion_time
from last_click
where recency = 1 and conversion_time - click_time <= interval 168 hours
