-- core.ticket: 12345 hotline work orders in their latest state, placed and attributed to a person.
-- grain: one row per ticket; key ticket_id.
-- Derived flags (DOMAIN.md, the three rates):
--   is_responded_in_time  first contact at or before response_deadline
--   is_resolved           resolved_at is set
--   is_rated              a satisfaction rating was given
--   is_satisfied          rated '满意' or '基本满意' (both count as satisfied, as 12345 practice counts
--                         满意率); is_fully_satisfied keeps '满意' alone
create or replace table core.ticket as

with

tickets as (

    select * from staging.stg_hotline__tickets

),

addresses as (

    select * from core.address

),

person_source as (

    select * from core.person_source where source = 'hotline.tickets'

),

final as (

    select
        tickets.ticket_id,
        person_source.person_id as caller_person_id,
        tickets.caller_name_std as caller_name,
        tickets.caller_phone_std as caller_phone,
        tickets.address,
        tickets.address_key,
        tickets.address_compound,
        tickets.address_building,
        addresses.grid_code,
        addresses.grid_name,
        addresses.community_code,
        addresses.community_name,
        tickets.street,
        tickets.department,
        tickets.category,
        tickets.urgency,
        tickets.content,
        tickets.status,
        tickets.status_name,
        tickets.satisfaction,
        tickets.received_at,
        tickets.dispatched_at,
        tickets.first_response_at,
        tickets.resolved_at,
        tickets.closed_at,
        tickets.rated_at,
        tickets.response_deadline,
        tickets.resolve_deadline,
        tickets.updated_at,
        cast(timezone('Asia/Shanghai', tickets.received_at) as date) as received_on,
        strftime(timezone('Asia/Shanghai', tickets.received_at), '%Y-%m') as received_month,
        coalesce(tickets.first_response_at <= tickets.response_deadline, false) as is_responded_in_time,
        tickets.first_response_at is not null as is_responded,
        tickets.resolved_at is not null as is_resolved,
        coalesce(tickets.resolved_at <= tickets.resolve_deadline, false) as is_resolved_in_time,
        tickets.closed_at is not null as is_closed,
        tickets.satisfaction is not null as is_rated,
        coalesce(tickets.satisfaction in ('满意', '基本满意'), false) as is_satisfied,
        coalesce(tickets.satisfaction = '满意', false) as is_fully_satisfied
    from tickets
    left join addresses on addresses.address_key = tickets.address_key
    left join person_source on person_source.record_key = tickets.ticket_id

)

select * from final order by ticket_id
