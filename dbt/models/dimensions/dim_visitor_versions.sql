{#- Versions of each visitor row: valid from its commit time until the next change. -#}
with changes as (
    select
        cast(json_extract(row_json, '$.visitor_id') as bigint) as visitor_id,
        json_extract_string(row_json, '$.name') as name,
        json_extract_string(row_json, '$.source') as source,
        json_extract_string(row_json, '$.country') as country,
        json_extract_string(row_json, '$.city') as city,
        json_extract_string(row_json, '$.device_type') as device_type,
        {{ epoch_day("cast(json_extract_string(row_json, '$.first_seen') as timestamptz)") }} as first_day,
        deleted, committed_at, lsn
    from {{ ref('stg_visitors_changes') }}
)
{{ versions('changes', 'visitor_id') }}
