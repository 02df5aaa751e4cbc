{#- Debezium changes of public.social_outlets, one row per change (see the cdc_changes macro). -#}
{{ cdc_changes('social_outlets') }}
