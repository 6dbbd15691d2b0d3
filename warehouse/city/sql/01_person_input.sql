-- city_work.person_input: the resolver's input, one row per district person (land.person).
-- grain: one row per (district_code, person_id); key person_uid.
create or replace table city_work.person_input as
select
    district_code || ':' || person_id as person_uid,
    district_code as district,
    person_id,
    id_key, id_masked_key, name_key, pinyin_key, birth_key, birth_year, sex, phone_key, phone2_key
from land.person
order by person_uid
