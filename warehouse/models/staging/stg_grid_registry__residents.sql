-- staging.stg_grid_registry__residents: registry residents, latest version, typed and standardised.
-- grain: one row per resident record; key resident_id. Soft-deleted residents are kept
-- (is_deleted, deleted_at): consumers filter them.
create or replace table staging.stg_grid_registry__residents as

with

residents as (

    select * from staging.grid_registry_residents

),

names as (

    select * from staging.stg_names

),

ids as (

    select * from staging.stg_ids

),

phones as (

    select * from staging.stg_phones

),

latest as (

    select *
    from residents
    qualify row_number() over (
        partition by resident_id
        order by updated_at desc nulls last, _extracted_at desc, _load_id desc, _record_hash desc
    ) = 1

),

typed as (

    select
        resident_id,
        household_id,
        name,
        id_number,
        sex,
        cast(birth_date as date) as birth_date,
        phone,
        relation,
        residence_type,
        cast(moved_in_on as date) as moved_in_on,
        updated_at,
        coalesce(cast(is_deleted as boolean), false) as is_deleted,
        deleted_at,
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
        ids.id_std as id_number_std,
        coalesce(ids.id_kind, 'missing') as id_number_kind,
        coalesce(ids.id_valid, false) as id_number_valid,
        ids.id_prefix6 as id_number_prefix6,
        ids.id_suffix4 as id_number_suffix4,
        ids.id_birth_date as id_number_birth_date,
        ids.id_sex as id_number_sex,
        phones.phone_std,
        coalesce(phones.phone_kind, 'missing') as phone_kind
    from typed
    left join names on names.name_raw = typed.name
    left join ids on ids.id_raw = typed.id_number
    left join phones on phones.phone_raw = typed.phone

)

select * from final order by resident_id
