-- staging.stg_grid_registry__residents: registry residents, latest version, typed and standardised.
-- grain: one row per resident record; key resident_id. Soft-deleted residents are kept
-- (is_deleted, deleted_at): consumers filter them. A resident the registry deleted outright (a
-- reconciliation's tombstone is their latest version) is kept the same way: is_deleted, with
-- is_hard_deleted and deleted_at = when the tombstone landed.
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

load_order as (

    select load_id, load_seq from meta.loads

),

versions as (

    -- versions in order: the latest load first (meta.loads.load_seq), whatever the source's clock says
    select
        residents.*,
        row_number() over recent as version_rank,
        first_value(residents._record_hash = 'tombstone') over recent as is_tombstoned,
        first_value(residents._extracted_at) over recent as tombstoned_at
    from residents
    left join load_order on load_order.load_id = residents._load_id
    window recent as (
        partition by resident_id
        order by load_order.load_seq desc nulls last,
            updated_at desc nulls last, _extracted_at desc,
            residents._load_id desc, _record_hash desc
    )

),

latest as (

    -- the latest real version; a hard-deleted resident (a tombstone is the latest) keeps the
    -- values of their last version and is marked deleted, like a soft delete
    select *
    from versions
    where _record_hash <> 'tombstone'
    qualify row_number() over (partition by resident_id order by version_rank) = 1

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
        coalesce(cast(is_deleted as boolean), false) or is_tombstoned as is_deleted,
        case when is_tombstoned then coalesce(deleted_at, tombstoned_at) else deleted_at end as deleted_at,
        is_tombstoned as is_hard_deleted,
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
