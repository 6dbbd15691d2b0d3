-- core.grid: the grid hierarchy flattened.
-- grain: one row per grid (every level: district, street, community, area, micro, special); key grid_code.
-- Each row carries its ancestors' codes and names, so a micro-grid row reads
-- micro-grid -> area -> community -> street -> district in one line (walked once, in staging).
create or replace table core.grid as

with

grids as (

    select * from staging.stg_grid_registry__grids

),

final as (

    select
        grids.grid_code,
        grids.level as grid_level,
        grids.name as grid_name,
        grids.parent_code,
        grids.level = 'micro' as is_micro,
        grids.area_code,
        grids.area_name,
        grids.community_code,
        grids.community_name,
        grids.street_code,
        grids.street_name,
        grids.district_code,
        grids.district_name,
        grids.depth,
        grids.updated_at
    from grids

)

select * from final order by grid_code
