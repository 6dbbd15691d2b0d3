-- staging.stg_hotline__tickets: 12345 work orders, latest version, typed and standardised.
-- grain: one row per ticket; key ticket_id.
-- Latest = greatest updated_at, then the latest extraction, then the latest load.
-- The address is the incident's place (building of the caller in most tickets, flat not theirs).
create or replace table staging.stg_hotline__tickets as

with

tickets as (

    select * from staging.hotline_tickets

),

names as (

    select * from staging.stg_names

),

ids as (

    select * from staging.stg_ids

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
    select tickets.*
    from tickets
    left join load_order on load_order.load_id = tickets._load_id
    qualify row_number() over (
        partition by ticket_id
        order by load_order.load_seq desc nulls last,
            try_cast(updated_at as timestamptz) desc nulls last, _extracted_at desc,
            tickets._load_id desc, _record_hash desc
    ) = 1

),

latest as (

    select * from versions where _record_hash <> 'tombstone'

),

typed as (

    select
        ticket_id,
        caller_name,
        caller_phone,
        caller_id_number,
        address,
        street,
        department,
        category,
        urgency,
        content,
        cast(received_at as timestamptz) as received_at,
        try_cast(dispatched_at as timestamptz) as dispatched_at,
        try_cast(first_response_at as timestamptz) as first_response_at,
        try_cast(resolved_at as timestamptz) as resolved_at,
        try_cast(closed_at as timestamptz) as closed_at,
        try_cast(rated_at as timestamptz) as rated_at,
        try_cast(response_deadline as timestamptz) as response_deadline,
        try_cast(resolve_deadline as timestamptz) as resolve_deadline,
        satisfaction,
        status,
        status_name,
        cast(updated_at as timestamptz) as updated_at,
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
        names.name_std as caller_name_std,
        names.name_pinyin as caller_name_pinyin,
        names.surname as caller_name_surname,
        ids.id_std as caller_id_number_std,
        coalesce(ids.id_kind, 'missing') as caller_id_number_kind,
        coalesce(ids.id_valid, false) as caller_id_number_valid,
        ids.id_prefix6 as caller_id_number_prefix6,
        ids.id_suffix4 as caller_id_number_suffix4,
        ids.id_birth_date as caller_id_number_birth_date,
        ids.id_sex as caller_id_number_sex,
        phones.phone_std as caller_phone_std,
        coalesce(phones.phone_kind, 'missing') as caller_phone_kind,
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
    left join names on names.name_raw = typed.caller_name
    left join ids on ids.id_raw = typed.caller_id_number
    left join phones on phones.phone_raw = typed.caller_phone
    left join addresses on addresses.address_raw = typed.address

)

select * from final order by ticket_id
