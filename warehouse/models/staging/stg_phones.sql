-- staging.stg_phones: every distinct raw phone number in any silo, standardised.
-- grain: one row per distinct raw value; key phone_raw.
-- One macro step per CTE (digits -> national number -> kind -> standard form).
create or replace table staging.stg_phones as

with

raw_phones as (

    select phone as phone_raw from staging.grid_registry_residents
    union
    select phone from staging.grid_registry_grid_workers
    union
    select phone from staging.health_codes_exports
    union
    select caller_phone from staging.hotline_tickets
    union
    select reporter_phone from staging.city_cases_cases

),

digits as (

    select phone_raw, std_phone_digits(phone_raw) as phone_digits
    from raw_phones
    where phone_raw is not null

),

national as (

    select phone_raw, std_phone_national(phone_raw, phone_digits) as phone_national
    from digits

),

classified as (

    select *, std_phone_kind(phone_national) as phone_kind
    from national

),

final as (

    select
        phone_raw,
        std_phone_std(phone_national, phone_kind) as phone_std,
        phone_kind
    from classified

)

select * from final
