{#-
  row_count_between: the model has between min_rows and max_rows rows (either bound may be
  null: no bound). Fails with one row, its row count, when outside.

      data_tests:
        - row_count_between:
            arguments: {min_rows: 1, max_rows: 1000000}

  Tagged `volume`; runs in `dbt build`. An empty fact or mart means a broken load.
-#}
{% test row_count_between(model, min_rows=1, max_rows=none) %}
{{ config(tags=['volume']) }}
{%- if min_rows is none and max_rows is none -%}
  {{ exceptions.raise_compiler_error("row_count_between on " ~ model ~ ": give min_rows, max_rows or both") }}
{%- endif %}
select row_count
from (select count(*) as row_count from {{ model }}) counted
where false
{%- if min_rows is not none %}
   or row_count < {{ min_rows }}
{%- endif %}
{%- if max_rows is not none %}
   or row_count > {{ max_rows }}
{%- endif %}
{% endtest %}
