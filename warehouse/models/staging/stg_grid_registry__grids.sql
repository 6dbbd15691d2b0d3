-- staging.stg_grid_registry__grids: the grid hierarchy, latest version, with each grid's ancestors.
-- grain: one row per grid (district, street, community, area, micro, special); key grid_code.
-- The ancestor columns (district_*, street_*, community_*, area_*) include the grid itself at its
-- level; depth is the number of steps up to the top. core.grid reads them: the walk is done here only.
create or replace table staging.stg_grid_registry__grids as

with

grids as (

    select * from staging.grid_registry_grids

),

load_order as (

    select load_id, load_seq from meta.loads

),

versions as (

    -- the latest version is the one of the latest load (meta.loads.load_seq), whatever the
    -- source's clock says; a tombstone (the source no longer has the key) removes the key
    select grids.*
    from grids
    left join load_order on load_order.load_id = grids._load_id
    qualify row_number() over (
        partition by grid_code
        order by load_order.load_seq desc nulls last,
            updated_at desc nulls last, _extracted_at desc, grids._load_id desc, _record_hash desc
    ) = 1

),

latest as (

    select * from versions where _record_hash <> 'tombstone'

),

walk as (

    -- every (grid, ancestor-or-self) pair, walking parent_code upwards; depth-capped against cycles
    with recursive up(grid_code, ancestor_code, depth) as (
        select grid_code, grid_code, 0 from latest
        union all
        select up.grid_code, latest.parent_code, up.depth + 1
        from up
        join latest on latest.grid_code = up.ancestor_code
        where latest.parent_code is not null and up.depth < 10
    )
    select * from up

),

ancestors as (

    select
        walk.grid_code,
        max(case when a.level = 'district' then a.grid_code end) as district_code,
        max(case when a.level = 'district' then a.name end) as district_name,
        max(case when a.level = 'street' then a.grid_code end) as street_code,
        max(case when a.level = 'street' then a.name end) as street_name,
        max(case when a.level = 'community' then a.grid_code end) as community_code,
        max(case when a.level = 'community' then a.name end) as community_name,
        max(case when a.level = 'area' then a.grid_code end) as area_code,
        max(case when a.level = 'area' then a.name end) as area_name,
        max(walk.depth) as depth
    from walk
    join latest as a on a.grid_code = walk.ancestor_code
    group by walk.grid_code

),

final as (

    select
        latest.grid_code,
        latest.level,
        latest.name,
        latest.parent_code,
        latest.updated_at,
        latest._load_id,
        latest._extracted_at,
        latest._source_position,
        latest._record_hash,
        latest._validation_run_id,
        ancestors.district_code,
        ancestors.district_name,
        ancestors.street_code,
        ancestors.street_name,
        ancestors.community_code,
        ancestors.community_name,
        ancestors.area_code,
        ancestors.area_name,
        ancestors.depth
    from latest
    left join ancestors on ancestors.grid_code = latest.grid_code

)

select * from final order by grid_code
