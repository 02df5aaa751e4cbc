{#- Debezium changes of public.visitors, one row per change (see the cdc_changes macro). -#}
{{ cdc_changes('visitors') }}
