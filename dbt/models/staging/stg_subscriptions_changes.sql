{#- Debezium changes of public.subscriptions, one row per change (see the cdc_changes macro). -#}
{{ cdc_changes('subscriptions') }}
