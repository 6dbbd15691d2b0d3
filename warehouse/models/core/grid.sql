-- core.grid: the grid hierarchy flattened.
-- grain: one row per grid (every level: district, street, community, area, micro, special); key grid_code.
-- Each row carries its ancestors' codes and names, so a micro-grid row reads
-- micro-grid -> area -> community -> street -> district in one line.
create or replace table core.grid as

with

grids as (

    select * from staging.stg_grid_registry__grids

),

ancestors as (

    -- every (grid, ancestor-or-self) pair, walking parent_code upwards
    with recursive walk(grid_code, ancestor_code, depth) as (
        select grid_code, grid_code, 0 from grids
        union all
        select walk.grid_code, grids.parent_code, walk.depth + 1
        from walk
        join grids on grids.grid_code = walk.ancestor_code
        where grids.parent_code is not null and walk.depth < 10
    )
    select * from walk

),

ancestor_levels as (

    select
        ancestors.grid_code,
        max(case when g.level = 'district' then g.grid_code end) as district_code,
        max(case when g.level = 'district' then g.name end) as district_name,
        max(case when g.level = 'street' then g.grid_code end) as street_code,
        max(case when g.level = 'street' then g.name end) as street_name,
        max(case when g.level = 'community' then g.grid_code end) as community_code,
        max(case when g.level = 'community' then g.name end) as community_name,
        max(case when g.level = 'area' then g.grid_code end) as area_code,
        max(case when g.level = 'area' then g.name end) as area_name,
        max(ancestors.depth) as depth
    from ancestors
    join grids as g on g.grid_code = ancestors.ancestor_code
    group by ancestors.grid_code

),

final as (

    select
        grids.grid_code,
        grids.level as grid_level,
        grids.name as grid_name,
        grids.parent_code,
        grids.level = 'micro' as is_micro,
        ancestor_levels.area_code,
        ancestor_levels.area_name,
        ancestor_levels.community_code,
        ancestor_levels.community_name,
        ancestor_levels.street_code,
        ancestor_levels.street_name,
        ancestor_levels.district_code,
        ancestor_levels.district_name,
        ancestor_levels.depth,
        grids.updated_at
    from grids
    left join ancestor_levels on ancestor_levels.grid_code = grids.grid_code

)

select * from final order by grid_code
