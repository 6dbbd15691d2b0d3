-- staging.stg_ids: every distinct raw resident ID number in any silo, standardised.
-- grain: one row per distinct raw value; key id_raw.
-- One macro step per CTE (clean -> body -> check character and birth date -> kind -> parts): a
-- macro argument is substituted at each use, so passing columns rather than nested calls keeps
-- the work linear.
create or replace table staging.stg_ids as

with

raw_ids as (

    select id_number as id_raw from staging.grid_registry_residents
    union
    select id_number from staging.health_codes_exports
    union
    select caller_id_number from staging.hotline_tickets

),

cleaned as (

    select id_raw, std_id_clean(id_raw) as id_clean
    from raw_ids
    where id_raw is not null

),

bodies as (

    select *, std_id_body17(id_clean) as body17
    from cleaned

),

checked as (

    select *, std_id_check_char(body17) as check_char, std_id_birth_date(body17) as birth_date
    from bodies

),

classified as (

    select *, std_id_kind(id_clean, body17, check_char, birth_date) as kind
    from checked

),

parts as (

    select id_raw, id_clean, std_id_parts(id_clean, body17, kind, check_char, birth_date) as p
    from classified

),

final as (

    select
        id_raw,
        id_clean,
        p.std as id_std,
        p.kind as id_kind,
        p.valid as id_valid,
        p.prefix6 as id_prefix6,
        p.suffix4 as id_suffix4,
        p.birth_date as id_birth_date,
        p.sex as id_sex
    from parts

)

select * from final
