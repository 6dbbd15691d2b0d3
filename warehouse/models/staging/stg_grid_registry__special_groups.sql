-- staging.stg_grid_registry__special_groups: residents in special groups, latest version, typed.
-- grain: one row per (resident_id, group_type).
create or replace table staging.stg_grid_registry__special_groups as

with

special_groups as (

    select * from staging.grid_registry_special_groups

),

load_order as (

    select load_id, load_seq from meta.loads

),

versions as (

    -- the latest version is the one of the latest load (meta.loads.load_seq), whatever the
    -- source's clock says; a tombstone (the source no longer has the key) removes the key
    select special_groups.*
    from special_groups
    left join load_order on load_order.load_id = special_groups._load_id
    qualify row_number() over (
        partition by resident_id, group_type
        order by load_order.load_seq desc nulls last,
            updated_at desc nulls last, _extracted_at desc, special_groups._load_id desc, _record_hash desc
    ) = 1

),

latest as (

    select * from versions where _record_hash <> 'tombstone'

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
