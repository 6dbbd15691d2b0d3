-- mart.hotline_rates: the hotline's three rates (三率, DOMAIN.md) by month, with roll-ups.
-- grain: one row per level x received_month x (street, department, category as the level keeps them);
-- key (level, received_month, street, department, category).
-- level: 'street_department_category' (all three kept), 'street', 'department', 'category',
-- 'district' (the month alone); columns a level rolls up are NULL.
--   response_rate      orders first contacted by their response deadline / all orders
--   resolution_rate    orders resolved / all orders
--   satisfaction_rate  satisfied ratings ('满意' + '基本满意') / rated orders; NULL with no rating
--   full_satisfaction_rate  '满意' alone / rated orders
-- Orders count in the month (Beijing time) they were received; an order not yet contacted counts
-- as not responded in time.
create or replace table mart.hotline_rates as

with

tickets as (

    select * from core.ticket

),

grouped as (

    select
        case grouping(street, department, category)
            when 0 then 'street_department_category'
            when 3 then 'street'
            when 5 then 'department'
            when 6 then 'category'
            when 7 then 'district'
        end as level,
        received_month,
        street,
        department,
        category,
        count(*) as orders,
        count(*) filter (where is_responded_in_time) as responded_in_time,
        count(*) filter (where is_resolved) as resolved,
        count(*) filter (where is_rated) as rated,
        count(*) filter (where is_satisfied) as satisfied,
        count(*) filter (where is_fully_satisfied) as fully_satisfied
    from tickets
    group by grouping sets (
        (received_month, street, department, category),
        (received_month, street),
        (received_month, department),
        (received_month, category),
        (received_month)
    )

),

final as (

    select
        *,
        responded_in_time / orders as response_rate,
        resolved / orders as resolution_rate,
        case when rated > 0 then satisfied / rated end as satisfaction_rate,
        case when rated > 0 then fully_satisfied / rated end as full_satisfaction_rate
    from grouped

)

select * from final
order by received_month, level, street nulls first, department nulls first, category nulls first
