-- staging.stg_names: every distinct raw person name in any silo with its standardised forms.
-- grain: one row per distinct raw name; key name_raw.
-- The name UDFs (warehouse/standardise/names.py) are Python, so they run here once per DISTINCT
-- value (pinyin and surname once per distinct standardised name) and the models join this table.
create or replace table staging.stg_names as

with

raw_names as (

    select name as name_raw from staging.grid_registry_residents
    union
    select name from staging.grid_registry_grid_workers
    union
    select name from staging.health_codes_exports
    union
    select caller_name from staging.hotline_tickets
    union
    select reporter_name from staging.city_cases_cases

),

standardised as (

    select name_raw, std_name(name_raw) as name_std
    from raw_names
    where name_raw is not null

),

distinct_std as (

    select distinct name_std from standardised where name_std is not null

),

keyed as (

    select
        name_std,
        std_name_pinyin(name_std) as name_pinyin,
        std_name_surname(name_std) as surname
    from distinct_std

),

final as (

    select standardised.name_raw, standardised.name_std, keyed.name_pinyin, keyed.surname
    from standardised
    left join keyed on keyed.name_std = standardised.name_std

)

select * from final
