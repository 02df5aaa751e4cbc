{#- Debezium changes of public.content, one row per change (see the cdc_changes macro). -#}
{{ cdc_changes('content') }}
