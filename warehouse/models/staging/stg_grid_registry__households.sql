-- staging.stg_grid_registry__households: registry households, latest version, address standardised.
-- grain: one row per household; key household_id.
-- address_* come from the registry's structured columns (compound, building, unit, room), which
-- are authoritative; the free-text address fills a part only where its column is empty.
create or replace table staging.stg_grid_registry__households as

with

households as (

    select * from staging.grid_registry_households

),

grids as (

    select * from staging.stg_grid_registry__grids

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
    select households.*
    from households
    left join load_order on load_order.load_id = households._load_id
    qualify row_number() over (
        partition by household_id
        order by load_order.load_seq desc nulls last,
            updated_at desc nulls last, _extracted_at desc, households._load_id desc, _record_hash desc
    ) = 1

),

latest as (

    select * from versions where _record_hash <> 'tombstone'

),

parts as (

    select
        latest.*,
        addresses.address_city,
        addresses.address_district,
        addresses.address_street,
        addresses.address_community,
        coalesce(std_address_clean(latest.compound), addresses.address_compound) as address_compound,
        coalesce(std_address_number(latest.building), addresses.address_building) as address_building,
        coalesce(std_address_number(latest.unit), addresses.address_unit) as address_unit,
        coalesce(std_address_number(latest.room), addresses.address_room) as address_room,
        addresses.address_key as address_parsed_key
    from latest
    left join addresses on addresses.address_raw = latest.address

),

final as (

    select
        parts.household_id,
        parts.grid_code,
        parts.address,
        parts.compound,
        parts.building,
        parts.unit,
        parts.room,
        parts.updated_at,
        parts._load_id,
        parts._extracted_at,
        parts._source_position,
        parts._record_hash,
        parts._validation_run_id,
        parts.address_city,
        parts.address_district,
        parts.address_street,
        parts.address_community,
        parts.address_compound,
        parts.address_building,
        parts.address_unit,
        parts.address_room,
        std_address_key(parts.address_compound, parts.address_building, parts.address_unit,
            parts.address_room) as address_key,
        parts.address_parsed_key,
        grids.community_code,
        grids.community_name,
        grids.street_code,
        grids.street_name
    from parts
    left join grids on grids.grid_code = parts.grid_code

)

select * from final order by household_id
