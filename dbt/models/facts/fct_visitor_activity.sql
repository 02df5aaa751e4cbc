{#- Visitor activity: every click and every activity log line, with the visitor, subscription,
    content and ad row versions valid at the event's time (docs/FUNNEL.md). -#}
with events as (
    select event_id, 'click' as origin, visitor_id, event_type, content_id, ad_id, event_time
    from {{ ref('stg_clicks') }}
    union all
    select event_id, 'log' as origin, visitor_id, event_type, content_id, ad_id, event_time
    from {{ ref('stg_weblogs') }}
)
select
    e.event_id,
    e.origin,
    e.visitor_id,
    e.event_type,
    e.content_id,
    e.ad_id,
    e.event_time,
    {{ epoch_day('e.event_time') }} as event_day,
    v.visitor_id is not null as visitor_known,
    coalesce(v.source, 'unknown') as visitor_source,
    coalesce(v.name, 'unknown') as visitor_name,
    v.country as visitor_country,
    v.first_day,
    coalesce(
        s.visitor_id is not null and not s.deleted
        and s.start_day <= {{ epoch_day('e.event_time') }}
        and (s.end_day is null or s.end_day >= {{ epoch_day('e.event_time') }}),
        false
    ) as subscribed,
    case when e.content_id is not null then coalesce(c.content_type, 'unknown') end as content_type,
    case when e.content_id is not null then coalesce(c.category, 'unknown') end as content_category,
    case when e.ad_id is not null then coalesce(a.campaign, 'unknown') end as campaign,
    case when e.ad_id is not null then coalesce(a.ad_source, 'unknown') end as ad_source
from events e
left join {{ ref('dim_visitor_versions') }} v
    on v.visitor_id = e.visitor_id and not v.deleted
    and v.committed_at <= e.event_time and (v.valid_to is null or e.event_time < v.valid_to)
left join {{ ref('dim_subscription_by_visitor') }} s
    on s.visitor_id = e.visitor_id
    and s.committed_at <= e.event_time and (s.valid_to is null or e.event_time < s.valid_to)
left join {{ ref('dim_content_versions') }} c
    on c.content_id = e.content_id and not c.deleted
    and c.committed_at <= e.event_time and (c.valid_to is null or e.event_time < c.valid_to)
left join {{ ref('dim_ad_versions') }} a
    on a.ad_id = e.ad_id and not a.deleted
    and a.committed_at <= e.event_time and (a.valid_to is null or e.event_time < a.valid_to)
