{#- Shared pieces of the HappyTimes models. Definitions: docs/FUNNEL.md. -#}

{#- Every record `happystreams lake-sink --raw` landed for a table under raw/<name>/:
    key, value (text), _topic, _partition, _offset, _timestamp. The source `lake_raw` declares
    where (models/sources.yml: a read_parquet over raw/<name>/**/*.parquet). -#}
{% macro raw_records(name) -%}
{{ source('lake_raw', name) }}
{%- endmacro %}

{#- Epoch day of a timestamp (UTC): whole days since 1970-01-01. -#}
{% macro epoch_day(ts) -%}
cast(floor(epoch_ms({{ ts }}) / 86400000) as bigint)
{%- endmacro %}

{#- Start of the hour window of a timestamp, as epoch milliseconds. -#}
{% macro hour_window_ms(ts) -%}
cast(floor(epoch_ms({{ ts }}) / 3600000) * 3600000 as bigint)
{%- endmacro %}

{#- Debezium change events (plain JSON) of a table: one row per change, tombstones and
    truncates left out. `row_json` is the row after the change, or before it for deletes
    (with the key columns filled in from the record key, as the engine does). -#}
{% macro cdc_changes(name) -%}
select
    json_extract_string(value, '$.op') as op,
    epoch_ms(cast(json_extract(value, '$.source.ts_ms') as bigint)) as committed_at,
    cast(json_extract(value, '$.source.lsn') as bigint) as lsn,
    _partition,
    _offset,
    json_extract_string(value, '$.op') = 'd' as deleted,
    case
        when json_extract_string(value, '$.op') = 'd'
            then json_merge_patch(coalesce(json_extract(value, '$.before'), '{}'), key)
        else json_extract(value, '$.after')
    end as row_json
from {{ raw_records(name) }}
where value is not null
  and json_extract_string(value, '$.op') in ('c', 'r', 'u', 'd')
{%- endmacro %}

{#- Row versions of a versioned table: each change of a key is valid from its commit time
    until the next change of that key (ordered by commit time, then log position). -#}
{% macro versions(changes, key_column) -%}
select
    *,
    lead(committed_at) over (partition by {{ key_column }} order by committed_at, lsn) as valid_to
from {{ changes }}
{%- endmacro %}
