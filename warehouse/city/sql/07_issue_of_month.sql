-- mart.issue_of_month: the issue of the month (每月一题) citywide and per district: the hotline
-- category with most orders. grain: one row per scope x month (x district); scope 'city' has
-- district_code NULL. Ties: more distinct incidents, then the category name.
create or replace table mart.issue_of_month as

with

counted as (

    select
        case when grouping(district_code) = 1 then 'city' else 'district' end as scope,
        received_month,
        district_code,
        category,
        count(*) as orders,
        count(distinct incident_uid) as incidents
    from core.ticket
    group by grouping sets ((received_month, category), (received_month, district_code, category))

),

ranked as (

    select
        *,
        sum(orders) over (partition by scope, received_month, district_code) as all_orders,
        row_number() over (partition by scope, received_month, district_code
                           order by orders desc, incidents desc, category) as category_rank
    from counted

)

select scope, received_month, district_code, category, orders, incidents,
       cast(all_orders as bigint) as all_orders, orders / all_orders as order_share
from ranked
where category_rank = 1
order by scope, received_month, district_code nulls first
