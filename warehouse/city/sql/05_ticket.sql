-- core.ticket: every district's tickets, the caller as a city person, the place's district found.
-- grain: one row per (district_code, ticket_id).
-- place_district_code: the district whose streets include the ticket's street, else the district
-- the address names; place_found_by says which ('street', 'address'); the receiving district
-- when neither names another.
create or replace table core.ticket as

with

streets as (

    -- a street name that belongs to exactly one district
    select street_name, any_value(district_code) as district_code
    from (select distinct district_code, street_name from land.place)
    group by street_name
    having count(*) = 1

),

districts as (

    select district_code, district_name from land.district

)

select
    t.district_code,
    t.ticket_id,
    t.district_code || ':' || t.incident_id as incident_uid,
    m.city_person_id as caller_city_person_id,
    t.street, t.department, t.category, t.urgency, t.grid_code, t.community_code, t.community_name,
    t.address_district, t.address_street, t.address_compound, t.address_building,
    coalesce(by_street.district_code, by_address.district_code, t.district_code) as place_district_code,
    case when by_street.district_code is not null then 'street'
         when by_address.district_code is not null then 'address' end as place_found_by,
    t.status, t.satisfaction, t.received_at, t.first_response_at, t.resolved_at, t.closed_at,
    t.response_deadline, t.resolve_deadline, t.received_on, t.received_month,
    t.is_responded_in_time, t.is_resolved, t.is_rated, t.is_satisfied
from land.ticket t
left join core.person_map m on m.district_code = t.district_code and m.person_id = t.caller_person_id
left join streets by_street on by_street.street_name = coalesce(t.address_street, t.street)
left join districts by_address on by_address.district_name = t.address_district
order by district_code, ticket_id
