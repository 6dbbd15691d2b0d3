-- core.person_map: every district person and the city person they are.
-- grain: one row per district person; key (district_code, person_id).
create or replace table core.person_map as
select
    s.source as district_code,
    s.record_key as person_id,
    s.person_id as city_person_id,
    s.link_rule,
    s.match_probability
from core.person_source s
order by district_code, person_id
