{#- Versions of each ad / affiliate row. -#}
with changes as (
    select
        cast(json_extract(row_json, '$.ad_id') as bigint) as ad_id,
        json_extract_string(row_json, '$.campaign') as campaign,
        json_extract_string(row_json, '$.source') as ad_source,
        json_extract_string(row_json, '$.ad_type') as ad_type,
        deleted, committed_at, lsn
    from {{ ref('stg_ads_changes') }}
)
{{ versions('changes', 'ad_id') }}
