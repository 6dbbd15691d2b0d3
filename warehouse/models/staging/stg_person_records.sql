-- staging.stg_person_records: every person-like record of every silo, in one shape for resolution.
-- grain: one row per source record; key record_uid = source || ':' || record_key.
-- Sources: registry residents (soft-deleted kept, is_deleted true) and grid workers, health-code
-- export rows, hotline callers, city-case reporters (only cases with a reporter name or phone).
-- id_std is NULL unless the ID is valid; id_prefix6/id_suffix4 are set for valid and masked IDs,
-- so a masked ID can be compared with a full one. birth_date/sex come from a valid ID, else from
-- the source's own column. Addresses are home addresses (registry households) or, for hotline
-- callers, only the compound and building of the ticket's place (callers mostly ring about their
-- own building; the unit and room are the incident's, not theirs). City-case places are not the
-- reporter's, so they are left out.
-- Second fields for records that hold only a phone (issue #17 item 5; the resolver's configuration
-- counts them as evidence): reported_building (a ticket's compound|building) against home_building
-- (a resident's registered compound|building); reporter_role '网格员' on grid workers and on the
-- city cases a grid worker reported; phone_holders, how many differently named people (distinct
-- pinyin) all records show with this phone, so a household's shared phone can be told apart.
create or replace table staging.stg_person_records as

with

residents as (

    select * from staging.stg_grid_registry__residents

),

households as (

    select * from staging.stg_grid_registry__households

),

workers as (

    select * from staging.stg_grid_registry__grid_workers

),

exports as (

    select * from staging.stg_health_codes__exports

),

tickets as (

    select * from staging.stg_hotline__tickets

),

cases as (

    select * from staging.stg_city_cases__cases

),

from_residents as (

    select
        'grid_registry.residents' as source,
        residents.resident_id as record_key,
        residents.name as name_raw,
        residents.name_std,
        residents.name_pinyin,
        residents.name_surname as surname,
        residents.id_number_std as id_std,
        residents.id_number_valid as id_valid,
        residents.id_number_kind as id_kind,
        residents.id_number_prefix6 as id_prefix6,
        residents.id_number_suffix4 as id_suffix4,
        coalesce(residents.id_number_birth_date, residents.birth_date) as birth_date,
        coalesce(residents.id_number_sex, residents.sex) as sex,
        residents.phone_std,
        residents.phone_kind,
        households.address_compound,
        households.address_building,
        households.address_unit,
        households.address_room,
        households.address_key,
        households.address_compound || '|' || households.address_building as home_building,
        households.community_name as community,
        households.grid_code,
        residents.household_id,
        residents.is_deleted,
        residents.updated_at as seen_at
    from residents
    left join households on households.household_id = residents.household_id

),

from_workers as (

    select
        'grid_registry.grid_workers' as source,
        worker_id as record_key,
        name as name_raw,
        name_std,
        name_pinyin,
        name_surname as surname,
        null::varchar as id_std,
        false as id_valid,
        'missing' as id_kind,
        null::varchar as id_prefix6,
        null::varchar as id_suffix4,
        null::date as birth_date,
        null::varchar as sex,
        phone_std,
        phone_kind,
        -- a worker's grid is where they work, not where they live
        null::varchar as address_compound,
        null::varchar as address_building,
        null::varchar as address_unit,
        null::varchar as address_room,
        null::varchar as address_key,
        null::varchar as community,
        null::varchar as grid_code,
        null::varchar as household_id,
        false as is_deleted,
        '网格员' as reporter_role,
        updated_at as seen_at
    from workers

),

from_exports as (

    select
        'health_codes.exports' as source,
        record_key,
        name as name_raw,
        name_std,
        name_pinyin,
        name_surname as surname,
        id_number_std as id_std,
        id_number_valid as id_valid,
        id_number_kind as id_kind,
        id_number_prefix6 as id_prefix6,
        id_number_suffix4 as id_suffix4,
        id_number_birth_date as birth_date,
        id_number_sex as sex,
        phone_std,
        phone_kind,
        null::varchar as address_compound,
        null::varchar as address_building,
        null::varchar as address_unit,
        null::varchar as address_room,
        null::varchar as address_key,
        community,
        null::varchar as grid_code,
        null::varchar as household_id,
        false as is_deleted,
        -- the export's Beijing-time day
        timezone('Asia/Shanghai', cast(export_date as timestamp)) as seen_at
    from exports

),

from_tickets as (

    select
        'hotline.tickets' as source,
        ticket_id as record_key,
        caller_name as name_raw,
        caller_name_std as name_std,
        caller_name_pinyin as name_pinyin,
        caller_name_surname as surname,
        caller_id_number_std as id_std,
        caller_id_number_valid as id_valid,
        caller_id_number_kind as id_kind,
        caller_id_number_prefix6 as id_prefix6,
        caller_id_number_suffix4 as id_suffix4,
        caller_id_number_birth_date as birth_date,
        caller_id_number_sex as sex,
        caller_phone_std as phone_std,
        caller_phone_kind as phone_kind,
        address_compound,
        address_building,
        address_compound || '|' || address_building as reported_building,
        null::varchar as address_unit,
        null::varchar as address_room,
        null::varchar as address_key,
        null::varchar as community,
        null::varchar as grid_code,
        null::varchar as household_id,
        false as is_deleted,
        received_at as seen_at
    from tickets

),

from_cases as (

    select
        'city_cases.cases' as source,
        case_id as record_key,
        reporter_name as name_raw,
        reporter_name_std as name_std,
        reporter_name_pinyin as name_pinyin,
        reporter_name_surname as surname,
        null::varchar as id_std,
        false as id_valid,
        'missing' as id_kind,
        null::varchar as id_prefix6,
        null::varchar as id_suffix4,
        null::date as birth_date,
        null::varchar as sex,
        reporter_phone_std as phone_std,
        reporter_phone_kind as phone_kind,
        null::varchar as address_compound,
        null::varchar as address_building,
        null::varchar as address_unit,
        null::varchar as address_room,
        null::varchar as address_key,
        null::varchar as community,
        null::varchar as grid_code,
        null::varchar as household_id,
        false as is_deleted,
        case when reporter_type = '网格员' then reporter_type end as reporter_role,
        reported_at as seen_at
    from cases
    where reporter_name is not null or reporter_phone is not null

),

unioned as (

    select * from from_residents
    union all by name
    select * from from_workers
    union all by name
    select * from from_exports
    union all by name
    select * from from_tickets
    union all by name
    select * from from_cases

),

holders as (

    -- recomputed over the whole table for the phones an incremental build touches
    -- (warehouse/standardise/incremental.py), as it counts across records
    select phone_std, count(distinct name_pinyin) as phone_holders
    from unioned
    where phone_std is not null
    group by phone_std

),

final as (

    select
        source || ':' || record_key as record_uid,
        source,
        record_key,
        name_raw,
        name_std,
        name_pinyin,
        surname,
        id_std,
        id_valid,
        id_kind,
        id_prefix6,
        id_suffix4,
        birth_date,
        sex,
        phone_std,
        phone_kind,
        address_compound,
        address_building,
        address_unit,
        address_room,
        address_key,
        community,
        grid_code,
        household_id,
        is_deleted,
        seen_at,
        home_building,
        reported_building,
        reporter_role,
        holders.phone_holders
    from unioned
    left join holders using (phone_std)

)

select * from final order by record_uid
