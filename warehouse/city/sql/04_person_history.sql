-- core.person_history: a city person's records in every district and silo, in time order.
-- grain: one row per (city person, district, district person, source); key those four.
create or replace table core.person_history as
select m.city_person_id, h.district_code, h.person_id, h.source, h.records, h.first_seen_at, h.last_seen_at
from land.person_history h
join core.person_map m on m.district_code = h.district_code and m.person_id = h.person_id
order by city_person_id, first_seen_at, district_code, source
