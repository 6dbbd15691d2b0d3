-- staging.stg_health_codes__exports: rows of the daily health-code exports, typed and standardised.
-- grain: one row per (export_date, record_no); record_key = 'YYYYMMDD#record_no'.
-- A re-sent file repeats its keys: the latest load wins, then the file name, so the pick is
-- deterministic. Local times in the files are Beijing time (Asia/Shanghai); some days give
-- 最近核酸采样时间 as an Excel serial day number, counted from 1899-12-30.
create or replace table staging.stg_health_codes__exports as

with

exports as (

    select * from staging.health_codes_exports

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

    -- the latest version is the one of the latest load (meta.loads.load_seq), whatever the
    -- source's clock says; a tombstone (the source no longer has the key) removes the key
    select exports.*
    from exports
    left join load_order on load_order.load_id = exports._load_id
    qualify row_number() over (
        partition by cast(export_date as date), cast(record_no as integer)
        order by load_order.load_seq desc nulls last,
            _extracted_at desc, exports._load_id desc, file_name desc, _record_hash desc
    ) = 1

),

latest as (

    select * from versions where _record_hash <> 'tombstone'

),

typed as (

    select
        cast(record_no as integer) as record_no,
        name,
        id_number,
        phone,
        code_color,
        timezone('Asia/Shanghai', cast(color_since as timestamp)) as color_since,
        try_cast(vaccine_doses as integer) as vaccine_doses,
        case
            when regexp_full_match(trim(last_test_at), '[0-9]+(\.[0-9]+)?')
                then timezone('Asia/Shanghai', timestamp '1899-12-30'
                    + to_microseconds(cast(round(cast(last_test_at as double) * 86400e6) as bigint)))
            else timezone('Asia/Shanghai', try_cast(last_test_at as timestamp))
        end as last_test_at,
        last_test_result,
        community,
        cast(export_date as date) as export_date,
        file_name,
        _load_id,
        _extracted_at,
        _source_position,
        _record_hash,
        _validation_run_id
    from latest

),

final as (

    select
        strftime(export_date, '%Y%m%d') || '#' || cast(record_no as varchar) as record_key,
        typed.*,
        case code_color when '绿码' then 'green' when '黄码' then 'yellow' when '红码' then 'red' end
            as color,
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

select * from final order by export_date, record_no
