-- staging.stg_grid_registry__grid_workers: grid workers, latest version, standardised.
-- grain: one row per worker; key worker_id.
create or replace table staging.stg_grid_registry__grid_workers as

with

workers as (

    select * from staging.grid_registry_grid_workers

),

names as (

    select * from staging.stg_names

),

phones as (

    select * from staging.stg_phones

),

load_order as (

    select load_id, load_seq from meta.loads

),

versions as (

    -- the latest version is the one of the latest load (meta.loads.load_seq), whatever the
    -- source's clock says; a tombstone (the source no longer has the key) removes the key
    select workers.*
    from workers
    left join load_order on load_order.load_id = workers._load_id
    qualify row_number() over (
        partition by worker_id
        order by load_order.load_seq desc nulls last,
            updated_at desc nulls last, _extracted_at desc, workers._load_id desc, _record_hash desc
    ) = 1

),

latest as (

    select * from versions where _record_hash <> 'tombstone'

),

typed as (

    select
        worker_id,
        name,
        phone,
        grid_code,
        role,
        updated_at,
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
        names.name_std,
        names.name_pinyin,
        names.surname as name_surname,
        phones.phone_std,
        coalesce(phones.phone_kind, 'missing') as phone_kind
    from typed
    left join names on names.name_raw = typed.name
    left join phones on phones.phone_raw = typed.phone

)

select * from final order by worker_id
