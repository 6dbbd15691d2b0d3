-- city_work.person_input: the resolver's input, one row per district person (land.person).
-- grain: one row per (district_code, person_id); key person_uid.
-- thin_uid: the person's own uid when the district knows neither their name nor a valid ID (a
-- nameless caller with a phone): the resolver collapses identical rows into one profile before it
-- weighs evidence, and two such callers sharing a family phone are not one person.
create or replace table city_work.person_input as
select
    district_code || ':' || person_id as person_uid,
    district_code as district,
    person_id,
    id_key, id_masked_key, name_key, pinyin_key, birth_key, birth_year, sex, phone_key, phone2_key,
    case when name_key is null and id_key is null then district_code || ':' || person_id end as thin_uid
from land.person
order by person_uid
