{#-
  Every partner file that `happystreams sftp-sync` landed in the lake, one row per CSV row:
  landing/<partner>/date=<YYYY-MM-DD>/<file>.csv  ->  <lake>/partner_files/landing_date=<YYYY-MM-DD>/
  Rebuilt whole on every run (the landing area is the source of truth).
-#}
{%- set lake = env_var('HAPPYTIMES_LAKE_DIR').rstrip('/') -%}
{{ config(
    materialized='external',
    location=lake ~ '/partner_files',
    format='parquet',
    options={'partition_by': 'landing_date', 'overwrite': 'true'},
    parquet_read_options={'hive_partitioning': true, 'union_by_name': true},
) }}

with landed as (
    select *
    from read_csv(
        '{{ lake }}/landing/*/date=*/*.csv',
        header = true,
        hive_partitioning = true,
        filename = '_landing_path',
        union_by_name = true
    )
)

select
    regexp_extract(_landing_path, '/landing/([^/]+)/date=[^/]+/[^/]+$', 1) as partner,
    cast("date" as date) as landing_date,
    regexp_extract(_landing_path, '[^/]+$') as landing_file,
    * exclude ("date", _landing_path)
from landed
