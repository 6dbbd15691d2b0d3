-- city city.person: one row per district person, with what the city links on as keyed hashes
-- (onenet_city_key = HMAC-SHA256 under the city-wide key, warehouse/city/keys.py): never an ID,
-- name, phone or birth date in the clear. grain: one row per person; key person_id (the
-- district's stable person id, which the city maps to its own).
--   id_key         the golden valid ID
--   id_masked_key  first 6 + last 4 of the ID: of the golden ID, else the masked ID most records hold
--   name_key / pinyin_key   the golden name, and its pinyin (homophones agree)
--   birth_key      the birth date; birth_year in the clear
--   phone_key      the golden phone; phone2_key the phone most other records hold (an older number)
--   registry_state 'current' (a live registry row), 'left' (only deleted rows), NULL (not registered)
-- Special groups (独居老人, 残疾人, 困境儿童) stay in the district: the city links people, it does not
-- visit them.
with

person as (

    select * from core.person

),

records as (

    select person_source.person_id, person_records.*
    from core.person_source
    join staging.stg_person_records person_records using (record_uid)

),

pinyin as (

    select records.person_id, min(records.name_pinyin) as name_pinyin
    from records join person on person.person_id = records.person_id and records.name_std = person.name
    group by 1

),

masked as (

    select person_id, id_prefix6 || '*' || id_suffix4 as id_masked
    from records
    where id_prefix6 is not null and id_suffix4 is not null
    group by person_id, id_masked
    qualify row_number() over (partition by person_id order by count(*) desc, id_masked) = 1

),

other_phone as (

    select records.person_id, records.phone_std
    from records join person using (person_id)
    where records.phone_std is not null and records.phone_std is distinct from person.phone
    group by records.person_id, records.phone_std
    qualify row_number() over (partition by records.person_id
                               order by count(*) desc, max(records.seen_at) desc, records.phone_std) = 1

),

registry as (

    select records.person_id,
           bool_or(not coalesce(records.is_deleted, false)) as is_live,
           max(residents.moved_in_on) as registered_on,
           max(cast(timezone('Asia/Shanghai', residents.deleted_at) as date)) as left_on
    from records
    left join staging.stg_grid_registry__residents residents on residents.resident_id = records.record_key
    where records.source = 'grid_registry.residents'
    group by 1

),

district as (

    select district_code from core.grid where grid_level = 'district' order by grid_code limit 1

),

final as (

    select
        district.district_code,
        person.person_id,
        onenet_city_key(person.id_number) as id_key,
        onenet_city_key(coalesce(left(person.id_number, 6) || '*' || right(person.id_number, 4),
                                 masked.id_masked)) as id_masked_key,
        onenet_city_key(person.name) as name_key,
        onenet_city_key(pinyin.name_pinyin) as pinyin_key,
        year(person.birth_date) as birth_year,
        onenet_city_key(cast(person.birth_date as varchar)) as birth_key,
        person.sex,
        onenet_city_key(person.phone) as phone_key,
        onenet_city_key(other_phone.phone_std) as phone2_key,
        person.is_resident,
        person.residence_type,
        case when registry.is_live then 'current' when registry.person_id is not null then 'left' end
            as registry_state,
        registry.registered_on,
        case when not registry.is_live then registry.left_on end as left_on,
        person.street_name,
        person.community_code,
        person.community_name,
        person.is_grid_worker,
        person.sources,
        person.record_count,
        person.first_seen_at,
        person.last_seen_at
    from person
    cross join district
    left join pinyin using (person_id)
    left join masked using (person_id)
    left join other_phone using (person_id)
    left join registry using (person_id)

)

select * from final order by person_id
