{#- Access-log lines (happytimes.weblogs) that are activity: parsed ("combined" + a quoted
    visitor id), status below 400, with a visitor id, and a path naming an action by the rules
    of topologies/happytimes.yaml. Lines that do not parse are dead letters in the stream and
    are left out here. -#}
with parsed as (
    select
        regexp_extract(
            value,
            '^(\S+) \S+ (\S+) \[([^\]]+)\] "((?:[^"\\]|\\.)*)" (\d+) (\S+) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"\s*$',
            ['remote_addr', 'remote_user', 'time', 'request', 'status', 'bytes', 'referrer', 'user_agent', 'visitor']
        ) as f
    from {{ raw_records('weblogs') }}
    where value is not null
),
fields as (
    select
        epoch_ms(epoch_ms(strptime(f.time, '%d/%b/%Y:%H:%M:%S %z'))) as event_time,
        split_part(f.request, ' ', 2) as url,
        regexp_extract(split_part(f.request, ' ', 2), '^[^?#]*') as path,
        cast(f.status as integer) as status,
        try_cast(f.visitor as bigint) as visitor_id
    from parsed
    where f.time <> '' and f.status <> ''
),
categorized as (
    select
        *,
        case
            when regexp_matches(path, '^/(article|video)/[^/]+/?$') then 'page_view'
            when regexp_matches(path, '^/share/[^/]+/?$') then 'share'
            when regexp_matches(path, '^/ad/[^/]+/?$') then 'ad_click'
            when regexp_matches(path, '^/go/[^/]+/?$') then 'affiliate_click'
            when regexp_matches(path, '^/subscribe/?$') then 'subscribe'
            when regexp_matches(path, '^/search/?$') then 'search'
            when regexp_matches(path, '^/login/?$') then 'login'
            when regexp_matches(path, '^/static(/.*)?$') then 'asset'
            else 'other'
        end as event_type,
        try_cast(regexp_extract(path, '^/(?:article|video|share)/([^/]+)/?$', 1) as bigint) as content_id,
        try_cast(regexp_extract(path, '^/(?:ad|go)/([^/]+)/?$', 1) as bigint) as ad_id
    from fields
)
select
    'log-' || visitor_id || '-' || strftime(event_time, '%Y-%m-%dT%H:%M:%SZ') || '-' || path as event_id,
    visitor_id,
    event_type,
    content_id,
    ad_id,
    url,
    event_time
from categorized
where visitor_id is not null
  and status < 400
  and event_type not in ('other', 'asset')
