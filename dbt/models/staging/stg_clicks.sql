{#- Click events (happytimes.clicks), one row per event. -#}
select
    json_extract_string(value, '$.event_id') as event_id,
    cast(json_extract(value, '$.visitor_id') as bigint) as visitor_id,
    json_extract_string(value, '$.session_id') as session_id,
    json_extract_string(value, '$.event_type') as event_type,
    cast(json_extract(value, '$.content_id') as bigint) as content_id,
    cast(json_extract(value, '$.ad_id') as bigint) as ad_id,
    json_extract_string(value, '$.url') as url,
    json_extract_string(value, '$.device_type') as device_type,
    epoch_ms(cast(json_extract(value, '$.event_time') as bigint)) as event_time
from {{ raw_records('clicks') }}
where value is not null
