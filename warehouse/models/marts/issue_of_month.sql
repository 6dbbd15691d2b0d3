-- mart.issue_of_month: the issue of the month (每月一题): the hotline category with most orders.
-- grain: one row per month for the district, and one per month x street; key (scope, received_month, street).
-- scope 'district' has street NULL. Ties go to the category with more distinct incidents, then by name.
create or replace table mart.issue_of_month as

with

tickets as (

    select * from core.ticket

),

incident_members as (

    select * from core.incident_member where member_type = 'ticket'

),

counted as (

    select
        case when grouping(tickets.street) = 1 then 'district' else 'street' end as scope,
        tickets.received_month,
        tickets.street,
        tickets.category,
        count(*) as orders,
        count(distinct incident_members.incident_id) as incidents
    from tickets
    left join incident_members on incident_members.member_key = tickets.ticket_id
    group by grouping sets (
        (tickets.received_month, tickets.category),
        (tickets.received_month, tickets.street, tickets.category)
    )

),

ranked as (

    select
        *,
        sum(orders) over (partition by scope, received_month, street) as all_orders,
        row_number() over (
            partition by scope, received_month, street order by orders desc, incidents desc, category
        ) as category_rank
    from counted

),

final as (

    select
        scope,
        received_month,
        street,
        category,
        orders,
        incidents,
        cast(all_orders as bigint) as all_orders,
        orders / all_orders as order_share
    from ranked
    where category_rank = 1

)

select * from final order by scope, received_month, street nulls first
