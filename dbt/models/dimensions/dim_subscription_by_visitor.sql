{#- Each visitor's subscription changes as versions: the visitor's latest change (create,
    update or delete of any of their subscriptions) is valid until their next one. -#}
with changes as (
    select
        cast(json_extract(row_json, '$.visitor_id') as bigint) as visitor_id,
        cast(json_extract(row_json, '$.subscription_id') as bigint) as subscription_id,
        json_extract_string(row_json, '$.subscription_type') as subscription_type,
        cast(json_extract(row_json, '$.start_date') as bigint) as start_day,
        cast(json_extract(row_json, '$.end_date') as bigint) as end_day,
        op, deleted, committed_at, lsn
    from {{ ref('stg_subscriptions_changes') }}
)
{{ versions('changes', 'visitor_id') }}
