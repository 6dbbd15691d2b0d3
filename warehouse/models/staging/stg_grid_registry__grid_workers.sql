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

latest as (

    select *
    from workers
    qualify row_number() over (
        partition by worker_id
        order by updated_at desc nulls last, _extracted_at desc, _load_id desc, _record_hash desc
    ) = 1

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
