-- mart.hotline_rates: the three rates (三率, DOMAIN.md) across the city by month.
-- grain: one row per level x received_month x (district, street, department as the level keeps them).
-- level: 'city' (the month), 'district', 'street' (district + street), 'department' (citywide),
-- 'district_department'. Same definitions as a district's mart.hotline_rates:
--   response_rate = responded in time / orders; resolution_rate = resolved / orders;
--   satisfaction_rate = satisfied ('满意' + '基本满意') / rated, NULL with no rating.
-- Orders count where they were received (the receiving district answers for them).
create or replace table mart.hotline_rates as

with

grouped as (

    select
        case grouping(district_code, street, department)
            when 7 then 'city'
            when 3 then 'district'
            when 1 then 'street'
            when 6 then 'department'
            when 2 then 'district_department'
        end as level,
        received_month,
        district_code,
        street,
        department,
        count(*) as orders,
        count(*) filter (where is_responded_in_time) as responded_in_time,
        count(*) filter (where is_resolved) as resolved,
        count(*) filter (where is_rated) as rated,
        count(*) filter (where is_satisfied) as satisfied
    from core.ticket
    group by grouping sets (
        (received_month),
        (received_month, district_code),
        (received_month, district_code, street),
        (received_month, department),
        (received_month, district_code, department)
    )

)

select
    *,
    responded_in_time / orders as response_rate,
    resolved / orders as resolution_rate,
    case when rated > 0 then satisfied / rated end as satisfaction_rate
from grouped
order by received_month, level, district_code nulls first, street nulls first, department nulls first
