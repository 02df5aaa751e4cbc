{#- Conversion: clicks and attributed conversions per campaign and click day. -#}
select
    campaign,
    click_day,
    count(*) filter (where not converted) as clicks,
    count(*) filter (where converted) as conversions,
    case
        when count(*) filter (where not converted) = 0 then 0.0
        else (count(*) filter (where converted))::double / (count(*) filter (where not converted))
    end as conversion_rate
from {{ ref('fct_conversion') }}
group by all
