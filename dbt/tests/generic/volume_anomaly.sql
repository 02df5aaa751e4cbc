{#-
  volume_anomaly: the volume of the latest complete day is in line with the trailing days.

  The volume of a day is `value` (default count(*): rows) over the rows whose
  `timestamp_column` falls on that UTC day. The day judged is the latest complete one: the day
  before the newest day with rows (that one may still be filling; later rows show the day is
  over and landed), and never after yesterday (UTC), so rows dated in the future do not move
  it. A table that stopped getting rows altogether has no such day after its last rows: that is
  for the freshness checks (`dbt source freshness`). The day is scored against the
  `lookback_days` before it with a robust z-score, the idea the stream uses for its input volume
  (src/observe/volume.rs, docs/OPERATIONS.md): (volume − median) / spread, the spread 1.4826 ×
  the median absolute deviation, so one outage or burst in the trailing days does not hide the
  next.

  scale = 'log' (default) scores ln(1 + volume): daily volumes vary by a factor (weekdays,
  campaigns), so a change is judged as a ratio. The spread is never below the Poisson noise of
  the median (1 / √median) nor `min_spread` (0.05: a ±5 % wobble of perfectly steady traffic is
  never surprising). With the default threshold of 6, on traffic that varies by ~20 % from day
  to day, a 30 % dip passes (score −2.4) while a drop to a tenth (−15) or a five-fold spike (+11)
  fails. scale = 'linear' scores the volume itself with the stream's spread (1.4826 × MAD, at
  least √median and 1): on such daily traffic even a day without rows rarely scores beyond −6.

  Days without rows count as 0, from the first day with rows in the window on (so a table
  younger than the window is judged on the days it has). No verdict (pass) until there are
  `min_history_days` trailing days.

  Fails with one row (the day, its volume, the median, the spread and the score) when
  |score| > threshold. Tagged `anomaly`; severity from var anomaly_severity (error or warn).

      data_tests:
        - volume_anomaly:
            arguments:
              timestamp_column: event_time    # a column or SQL expression
              timestamp_unit: timestamp       # timestamp (or date) | epoch_ms | epoch_day
              value: "sum(views)"             # optional, default count(*)
              # lookback_days, min_history_days, threshold: default to the vars anomaly_*
-#}
{% test volume_anomaly(model, timestamp_column, timestamp_unit='timestamp', value='count(*)',
                       lookback_days=none, min_history_days=none, threshold=none,
                       scale='log', min_spread=0.05) %}
{{ config(tags=['anomaly'], severity=var('anomaly_severity', 'error')) }}
{%- set lookback_days = lookback_days if lookback_days is not none else var('anomaly_lookback_days', 28) -%}
{%- set min_history_days = min_history_days if min_history_days is not none else var('anomaly_min_history_days', 7) -%}
{%- set threshold = threshold if threshold is not none else var('anomaly_z_threshold', 6) -%}
{%- if timestamp_unit == 'timestamp' -%}
  {%- set day = 'cast(floor(epoch_ms(' ~ timestamp_column ~ ') / 86400000) as bigint)' -%}
{%- elif timestamp_unit == 'epoch_ms' -%}
  {%- set day = 'cast(floor((' ~ timestamp_column ~ ') / 86400000) as bigint)' -%}
{%- elif timestamp_unit == 'epoch_day' -%}
  {%- set day = 'cast(' ~ timestamp_column ~ ' as bigint)' -%}
{%- else -%}
  {{ exceptions.raise_compiler_error("volume_anomaly on " ~ model ~ ": timestamp_unit must be timestamp, epoch_ms or epoch_day, not " ~ timestamp_unit) }}
{%- endif -%}
{%- if scale == 'log' -%}
  {%- set score = 'ln(1 + volume)' -%}
  {%- set floor = '1 / sqrt(greatest(median_volume, 1)), ' ~ min_spread -%}
{%- elif scale == 'linear' -%}
  {%- set score = 'volume' -%}
  {%- set floor = 'sqrt(median_volume), 1' -%}
{%- else -%}
  {{ exceptions.raise_compiler_error("volume_anomaly on " ~ model ~ ": scale must be log or linear, not " ~ scale) }}
{%- endif %}
with per_day as (
    select {{ day }} as day, {{ value }} as volume
    from {{ model }}
    where {{ timestamp_column }} is not null
    group by 1
),
judged as (
    select least(max(day), cast(floor(epoch_ms(now()) / 86400000) as bigint)) - 1 as judged_day
    from per_day
),
days as (
    select unnest(range(judged_day - {{ lookback_days }}, judged_day + 1)) as day, judged_day
    from judged
),
filled as (
    select d.day, d.judged_day, coalesce(p.volume, 0) as volume
    from days d
    left join per_day p on p.day = d.day
    where d.day >= (
        select min(p2.day) from per_day p2, judged j
        where p2.day between j.judged_day - {{ lookback_days }} and j.judged_day
    )
),
history as (
    select
        count(*) as history_days,
        median(volume) as median_volume,
        median({{ score }}) as center,
        mad({{ score }}) as mad
    from filled
    where day < judged_day
),
scored as (
    select
        f.day as judged_day,
        cast(to_days(cast(f.day as integer)) + date '1970-01-01' as date) as judged_date,
        f.volume,
        h.history_days,
        h.median_volume,
        greatest(1.4826 * h.mad, {{ floor }}) as spread,
        ({{ score }} - h.center) / greatest(1.4826 * h.mad, {{ floor }}) as z
    from filled f, history h
    where f.day = f.judged_day
)
select judged_date, volume, history_days, median_volume, spread, z, {{ threshold }} as threshold
from scored
where history_days >= {{ min_history_days }}
  and abs(z) > {{ threshold }}
{% endtest %}
