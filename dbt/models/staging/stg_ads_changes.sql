{#- Debezium changes of public.ads, one row per change (see the cdc_changes macro). -#}
{{ cdc_changes('ads') }}
