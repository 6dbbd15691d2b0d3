-- core.household: registry households placed in their micro-grid, community and street.
-- grain: one row per household; key household_id.
create or replace table core.household as

with

households as (

    select * from staging.stg_grid_registry__households

),

grids as (

    select * from core.grid

),

residents as (

    select * from staging.stg_grid_registry__residents

),

resident_counts as (

    select
        household_id,
        count(*) filter (where not coalesce(is_deleted, false)) as resident_count,
        count(*) filter (where not coalesce(is_deleted, false) and residence_type = '户籍') as registered_count,
        count(*) filter (where not coalesce(is_deleted, false) and residence_type = '流动') as migrant_count
    from residents
    group by household_id

),

final as (

    select
        households.household_id,
        households.address,
        households.compound,
        households.building,
        households.unit,
        households.room,
        households.address_community,
        households.address_compound,
        households.address_building,
        households.address_unit,
        households.address_room,
        households.address_key,
        households.grid_code,
        grids.grid_name,
        grids.area_code,
        grids.community_code,
        grids.community_name,
        grids.street_code,
        grids.street_name,
        coalesce(resident_counts.resident_count, 0) as resident_count,
        coalesce(resident_counts.registered_count, 0) as registered_count,
        coalesce(resident_counts.migrant_count, 0) as migrant_count,
        households.updated_at
    from households
    left join grids on grids.grid_code = households.grid_code
    left join resident_counts on resident_counts.household_id = households.household_id

)

select * from final order by household_id
