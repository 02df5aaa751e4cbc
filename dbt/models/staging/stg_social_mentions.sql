{#- Social mentions (happytimes.social_mentions), one row per mention. -#}
select
    json_extract_string(value, '$.mention_id') as mention_id,
    cast(json_extract(value, '$.outlet_id') as bigint) as outlet_id,
    cast(json_extract_string(value, '$.sentiment_score') as decimal(4, 3)) as sentiment_score,
    json_extract_string(value, '$.text') as text,
    epoch_ms(cast(json_extract(value, '$.event_time') as bigint)) as event_time
from {{ raw_records('social_mentions') }}
where value is not null
