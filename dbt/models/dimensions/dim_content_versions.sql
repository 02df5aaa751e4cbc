{#- Versions of each content row. -#}
with changes as (
    select
        cast(json_extract(row_json, '$.content_id') as bigint) as content_id,
        json_extract_string(row_json, '$.type') as content_type,
        json_extract_string(row_json, '$.title') as title,
        json_extract_string(row_json, '$.category') as category,
        deleted, committed_at, lsn
    from {{ ref('stg_content_changes') }}
)
{{ versions('changes', 'content_id') }}
