-- city city.ticket: the district's hotline work orders for city rates and cross-district incidents:
-- no caller name, phone, address text or free text; the caller as the district's person id, the
-- place as parsed parts (the district and street the address names, compound and building).
-- grain: one row per ticket; key ticket_id.
with

tickets as (

    select * from core.ticket

),

addresses as (

    select * from staging.stg_addresses

),

incidents as (

    select member_key, incident_id from core.incident_member where member_type = 'ticket'

)

select
    tickets.ticket_id,
    incidents.incident_id,
    tickets.caller_person_id,
    tickets.street,
    tickets.department,
    tickets.category,
    tickets.urgency,
    tickets.grid_code,
    tickets.community_code,
    tickets.community_name,
    nullif(addresses.address_district, '') as address_district,
    nullif(addresses.address_street, '') as address_street,
    tickets.address_compound,
    tickets.address_building,
    tickets.status,
    tickets.satisfaction,
    tickets.received_at,
    tickets.first_response_at,
    tickets.resolved_at,
    tickets.closed_at,
    tickets.response_deadline,
    tickets.resolve_deadline,
    tickets.received_on,
    tickets.received_month,
    tickets.is_responded_in_time,
    tickets.is_resolved,
    tickets.is_rated,
    tickets.is_satisfied
from tickets
left join addresses on addresses.address_raw = tickets.address
left join incidents on incidents.member_key = tickets.ticket_id
order by ticket_id
