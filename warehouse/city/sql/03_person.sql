-- core.person: one row per city person, with where they are on record.
-- grain: one row per city person; key city_person_id.
--   districts          the districts holding them (any record)
--   home_district      the district whose registry holds them now (latest registration), if any
--   is_mover           registered in one district, left it, and registered now in another
--   is_double_registered  a live registration in two or more districts
create or replace table core.person as

with

persons as (

    select m.city_person_id, p.*
    from core.person_map m
    join land.person p on p.district_code = m.district_code and p.person_id = m.person_id

),

summary as (

    select
        city_person_id,
        list(distinct district_code order by district_code) as districts,
        list(district_code || ':' || person_id order by district_code, person_id) as district_person_ids,
        count(*) as district_persons,
        list(distinct district_code order by district_code) filter (where registry_state = 'current')
            as registered_in,
        list(distinct district_code order by district_code) filter (where registry_state = 'left') as left_from,
        any_value(birth_year) filter (where birth_year is not null) as birth_year,
        any_value(sex) filter (where sex is not null) as sex,
        sum(record_count) as records,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at
    from persons
    group by city_person_id

),

home as (

    select city_person_id, district_code as home_district, street_name as home_street,
           community_name as home_community
    from persons
    where registry_state = 'current'
    qualify row_number() over (partition by city_person_id
                               order by registered_on desc nulls last, district_code) = 1

)

select
    summary.city_person_id,
    summary.districts,
    summary.district_person_ids,
    summary.district_persons,
    home.home_district,
    home.home_street,
    home.home_community,
    coalesce(len(summary.left_from) > 0 and len(list_filter(summary.registered_in,
             d -> not list_contains(summary.left_from, d))) > 0, false) as is_mover,
    coalesce(len(summary.registered_in) > 1, false) as is_double_registered,
    summary.birth_year,
    summary.sex,
    summary.records,
    summary.first_seen_at,
    summary.last_seen_at
from summary
left join home using (city_person_id)
order by city_person_id
