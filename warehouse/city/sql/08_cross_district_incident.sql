-- mart.cross_district_incident: tickets received in one district about a place in another
-- (跨区事项), with the other district's reports of the same place and category, if any.
-- grain: one row per cross-district ticket; key (district_code, ticket_id).
--   place_incident_uids  incidents of the place's district at the same compound and building, of
--                        the same category, received within three days of this ticket
create or replace table mart.cross_district_incident as

with

cross_tickets as (

    select * from core.ticket where place_district_code <> district_code

),

matches as (

    select c.district_code, c.ticket_id,
           list(distinct o.incident_uid order by o.incident_uid) as place_incident_uids
    from cross_tickets c
    join core.ticket o
      on o.district_code = c.place_district_code
     and o.address_compound = c.address_compound
     and o.address_building is not distinct from c.address_building
     and o.category = c.category
     and abs(epoch(o.received_at) - epoch(c.received_at)) <= 3 * 86400
    group by all

)

select
    c.district_code,
    d.district_name,
    c.ticket_id,
    c.incident_uid,
    c.place_district_code,
    p.district_name as place_district_name,
    c.place_found_by,
    c.street,
    c.address_compound,
    c.address_building,
    c.department,
    c.category,
    c.received_at,
    c.received_month,
    c.caller_city_person_id,
    coalesce(matches.place_incident_uids, []) as place_incident_uids,
    c.is_resolved
from cross_tickets c
left join land.district d on d.district_code = c.district_code
left join land.district p on p.district_code = c.place_district_code
left join matches on matches.district_code = c.district_code and matches.ticket_id = c.ticket_id
order by district_code, ticket_id
