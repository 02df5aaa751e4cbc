{#- Versions of each social outlet row. -#}
with changes as (
    select
        cast(json_extract(row_json, '$.outlet_id') as bigint) as outlet_id,
        json_extract_string(row_json, '$.outlet_name') as outlet_name,
        json_extract_string(row_json, '$.sentiment_category') as sentiment_category,
        deleted, committed_at, lsn
    from {{ ref('stg_social_outlets_changes') }}
)
{{ versions('changes', 'outlet_id') }}
