-- staging.stg_addresses: every distinct free-text address in any silo, parsed.
-- grain: one row per distinct raw address; key address_raw.
-- Parts: city / district / street / community / compound / building / unit / room, numerals
-- unified (三号楼 = 3号楼 = 3栋 = 3幢 = 3#楼 -> '3'), and address_key = compound|building|unit|room.
create or replace table staging.stg_addresses as

with

raw_addresses as (

    select address as address_raw from staging.grid_registry_households
    union
    select address from staging.hotline_tickets
    union
    select address from staging.city_cases_cases

),

cleaned as (

    select address_raw, std_address_clean(address_raw) as address_clean
    from raw_addresses
    where address_raw is not null

),

first_shape as (

    select *, std_address_shape1(address_clean) as p1
    from cleaned

),

split as (

    select address_raw, std_address_parts_of(address_clean, p1) as p
    from first_shape

),

parsed as (

    select address_raw, std_address_of_parts(p) as a
    from split

),

final as (

    select
        address_raw,
        a.city as address_city,
        a.district as address_district,
        a.street as address_street,
        a.community as address_community,
        a.compound as address_compound,
        a.building as address_building,
        a.unit as address_unit,
        a.room as address_room,
        a.key as address_key
    from parsed

)

select * from final
