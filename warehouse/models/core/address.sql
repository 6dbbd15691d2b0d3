-- core.address: every distinct standardised address seen in any silo, placed in a grid where possible.
-- grain: one row per address_key; key address_key.
-- Placement: the compound + building matches a registry household's building -> that building's
-- micro-grid (match_level 'building'); else the compound alone matches and all its households lie
-- in one community -> that community (match_level 'compound'); else unplaced (match_level NULL).
create or replace table core.address as

with

households as (

    select * from core.household

),

grids as (

    select * from core.grid

),

tickets as (

    select * from staging.stg_hotline__tickets

),

cases as (

    select * from staging.stg_city_cases__cases

),

seen as (

    select 'grid_registry.households' as source, address_key, address_community, address_compound,
        address_building, address_unit, address_room
    from households
    union all
    select 'hotline.tickets', address_key, address_community, address_compound,
        address_building, address_unit, address_room
    from tickets
    union all
    select 'city_cases.cases', address_key, address_community, address_compound,
        address_building, address_unit, address_room
    from cases

),

addresses as (

    select
        address_key,
        -- the parts are a function of the key; min() only picks one spelling deterministically
        min(address_community) as address_community,
        min(address_compound) as address_compound,
        min(address_building) as address_building,
        min(address_unit) as address_unit,
        min(address_room) as address_room,
        list(distinct source order by source) as sources,
        count(*) as record_count
    from seen
    where address_key is not null
    group by address_key

),

building_grid_counts as (

    select address_compound, address_building, grid_code, count(*) as households
    from households
    where address_compound is not null and address_building is not null and grid_code is not null
    group by all

),

building_grids as (

    select address_compound, address_building, grid_code
    from building_grid_counts
    qualify row_number() over (
        partition by address_compound, address_building order by households desc, grid_code
    ) = 1

),

compound_communities as (

    select address_compound, min(community_code) as community_code
    from households
    where address_compound is not null and community_code is not null
    group by address_compound
    having count(distinct community_code) = 1

),

placed as (

    select
        addresses.*,
        building_grids.grid_code,
        coalesce(grids.community_code, compound_communities.community_code) as community_code,
        case
            when building_grids.grid_code is not null then 'building'
            when compound_communities.community_code is not null then 'compound'
        end as match_level
    from addresses
    left join building_grids
        on building_grids.address_compound = addresses.address_compound
        and building_grids.address_building = addresses.address_building
    left join grids on grids.grid_code = building_grids.grid_code
    left join compound_communities on compound_communities.address_compound = addresses.address_compound

),

final as (

    select
        placed.address_key,
        placed.address_community,
        placed.address_compound,
        placed.address_building,
        placed.address_unit,
        placed.address_room,
        placed.grid_code,
        grids.grid_name,
        grids.area_code,
        placed.community_code,
        communities.grid_name as community_name,
        communities.street_code,
        communities.street_name,
        placed.match_level,
        placed.sources,
        placed.record_count
    from placed
    left join grids on grids.grid_code = placed.grid_code
    left join grids as communities on communities.grid_code = placed.community_code

)

select * from final order by address_key
