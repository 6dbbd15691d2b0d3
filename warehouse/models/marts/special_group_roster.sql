-- mart.special_group_roster: who needs a visit: every person in a special group (独居老人, 残疾人,
-- 困境儿童 ...), with where they live, how to reach them and their latest health-code colour.
-- grain: one row per person in a special group; key person_key (the pseudonym, never person_id).
-- name, id_number, phone are full values from core.person: extracts and reports mask them by role.
-- latest_contact_*: the most recent record in any silo that carries a phone (its number, silo, time),
-- often fresher than the registry's.
create or replace table mart.special_group_roster as

with

persons as (

    select * from core.person where is_special_group

),

person_source as (

    select * from core.person_source

),

person_records as (

    select * from staging.stg_person_records

),

health_periods as (

    select * from core.health_status_history where is_current

),

households as (

    select * from core.household

),

as_of as (

    -- the data's own "today": the latest instant any source record was seen
    select cast(timezone('Asia/Shanghai', max(seen_at)) as date) as as_of_on from person_records

),

latest_contacts as (

    select
        person_source.person_id,
        person_records.phone_std as latest_contact_phone,
        person_records.source as latest_contact_source,
        person_records.seen_at as latest_contact_at
    from person_records
    join person_source on person_source.record_uid = person_records.record_uid
    -- only the roster's persons: ranking every record of the district first took most of the time
    where person_records.phone_std is not null
        and person_source.person_id in (select person_id from persons)
    qualify row_number() over (
        partition by person_source.person_id
        order by person_records.seen_at desc nulls last, person_records.record_uid
    ) = 1

),

final as (

    select
        persons.person_key,
        persons.name,
        persons.id_number,
        persons.phone,
        persons.sex,
        persons.birth_date,
        date_diff('year', persons.birth_date, as_of.as_of_on)
            - case when strftime(as_of.as_of_on, '%m%d') < strftime(persons.birth_date, '%m%d') then 1 else 0 end
            as age,
        persons.special_groups as group_types,
        array_to_string(persons.special_groups, '、') as group_types_text,
        persons.residence_type,
        persons.household_id,
        households.address as household_address,
        persons.grid_code,
        persons.grid_name,
        persons.community_code,
        persons.community_name,
        persons.street_name,
        latest_contacts.latest_contact_phone,
        latest_contacts.latest_contact_source,
        latest_contacts.latest_contact_at,
        health_periods.color as code_color,
        health_periods.valid_from as code_color_since,
        as_of.as_of_on
    from persons
    cross join as_of
    left join households on households.household_id = persons.household_id
    left join latest_contacts on latest_contacts.person_id = persons.person_id
    left join health_periods on health_periods.person_id = persons.person_id

)

select * from final order by community_code, grid_code, person_key
