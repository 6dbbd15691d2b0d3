-- city city.city_case: the district's city-management cases, placed, without reporter details.
-- grain: one row per case; key case_id.
with

cases as (

    select * from core.city_case

),

addresses as (

    select * from staging.stg_addresses

),

incidents as (

    select member_key, incident_id from core.incident_member where member_type = 'case'

)

select
    cases.case_id,
    incidents.incident_id,
    cases.source_ticket_id,
    cases.reporter_person_id,
    cases.reporter_type,
    cases.category_type,
    cases.category_code,
    cases.category_name,
    cases.street,
    cases.community_code,
    cases.community_name,
    cases.grid_code,
    nullif(addresses.address_district, '') as address_district,
    cases.address_compound,
    cases.lon,
    cases.lat,
    cases.status,
    cases.reported_at,
    cases.closed_at,
    cases.deadline,
    cases.reported_on,
    cases.is_open,
    cases.is_disposed_in_time
from cases
left join addresses on addresses.address_raw = cases.address
left join incidents on incidents.member_key = cases.case_id
order by case_id
