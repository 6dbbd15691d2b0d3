-- staging.stg_city_cases__cases: city-management cases, latest version, typed and standardised.
-- grain: one row per case; key case_id.
-- Latest = greatest updated_at, then the latest extraction, then the latest load.
-- The address is the incident's place (a building), not the reporter's.
create or replace table staging.stg_city_cases__cases as

with

cases as (

    select * from staging.city_cases_cases

),

names as (

    select * from staging.stg_names

),

phones as (

    select * from staging.stg_phones

),

addresses as (

    select * from staging.stg_addresses

),

load_order as (

    select load_id, load_seq from meta.loads

),

versions as (

    -- the latest version is the one of the latest load (meta.loads.load_seq), whatever the
    -- source's clock says; a tombstone (the source no longer has the key) removes the key
    select cases.*
    from cases
    left join load_order on load_order.load_id = cases._load_id
    qualify row_number() over (
        partition by case_id
        order by load_order.load_seq desc nulls last,
            try_cast(updated_at as timestamptz) desc nulls last, _extracted_at desc,
            cases._load_id desc, _record_hash desc
    ) = 1

),

latest as (

    select * from versions where _record_hash <> 'tombstone'

),

typed as (

    select
        case_id,
        category_type,
        category_code,
        category_name,
        description,
        address,
        street,
        community,
        reporter_type,
        reporter_name,
        reporter_phone,
        source_ticket_id,
        cast(reported_at as timestamptz) as reported_at,
        try_cast(registered_at as timestamptz) as registered_at,
        try_cast(dispatched_at as timestamptz) as dispatched_at,
        try_cast(disposed_at as timestamptz) as disposed_at,
        try_cast(verified_at as timestamptz) as verified_at,
        try_cast(closed_at as timestamptz) as closed_at,
        try_cast(deadline as timestamptz) as deadline,
        status,
        status_name,
        cast(updated_at as timestamptz) as updated_at,
        cast(lon as double) as lon,
        cast(lat as double) as lat,
        _load_id,
        _extracted_at,
        _source_position,
        _record_hash,
        _validation_run_id
    from latest

),

final as (

    select
        typed.*,
        names.name_std as reporter_name_std,
        names.name_pinyin as reporter_name_pinyin,
        names.surname as reporter_name_surname,
        phones.phone_std as reporter_phone_std,
        coalesce(phones.phone_kind, 'missing') as reporter_phone_kind,
        addresses.address_city,
        addresses.address_district,
        addresses.address_street,
        addresses.address_community,
        addresses.address_compound,
        addresses.address_building,
        addresses.address_unit,
        addresses.address_room,
        addresses.address_key
    from typed
    left join names on names.name_raw = typed.reporter_name
    left join phones on phones.phone_raw = typed.reporter_phone
    left join addresses on addresses.address_raw = typed.address

)

select * from final order by case_id
