-- staging.stg_grid_registry__special_groups: residents in special groups, latest version, typed.
-- grain: one row per (resident_id, group_type).
create or replace table staging.stg_grid_registry__special_groups as

with

special_groups as (

    select * from staging.grid_registry_special_groups

),

latest as (

    select *
    from special_groups
    qualify row_number() over (
        partition by resident_id, group_type
        order by updated_at desc nulls last, _extracted_at desc, _load_id desc, _record_hash desc
    ) = 1

),

final as (

    select
        resident_id,
        group_type,
        cast(since as date) as since,
        note,
        updated_at,
        _load_id,
        _extracted_at,
        _source_position,
        _record_hash,
        _validation_run_id
    from latest

)

select * from final order by resident_id, group_type
