-- core.health_status_history: each person's health-code colour as a series of periods.
-- grain: one row per person per status period; key (person_id, period_no) (valid_from ascending).
-- incremental key: person_id (a merge refreshes only the persons it touched; see warehouse/models)
-- The daily export files list a person when their state changes (the first file lists everyone).
-- Consecutive exports with the same colour are one period; a period starts at the platform's own
-- color_since (else Beijing midnight of the export date) and ends where the next one starts;
-- valid_to NULL = the current period. Several rows of one person in one export: the one with the
-- latest color_since wins (ties: the more severe colour).
create or replace table core.health_status_history as

with

exports as (

    select * from staging.stg_health_codes__exports

),

person_source as (

    select * from core.person_source where source = 'health_codes.exports'

),

records as (

    select
        person_source.person_id,
        person_source.record_uid,
        exports.color,
        exports.code_color,
        exports.export_date,
        exports.file_name,
        coalesce(exports.color_since, timezone('Asia/Shanghai', cast(exports.export_date as timestamp)))
            as color_since
    from exports
    join person_source
        on person_source.record_key = strftime(exports.export_date, '%Y%m%d') || '#' || exports.record_no
    where exports.color is not null

),

daily as (

    select *
    from records
    qualify row_number() over (
        partition by person_id, export_date
        order by color_since desc,
            case color when 'red' then 1 when 'yellow' then 2 else 3 end,
            record_uid
    ) = 1

),

changes as (

    select
        *,
        coalesce(lag(color) over (partition by person_id order by export_date) <> color, true)
            as is_change
    from daily

),

numbered as (

    select
        *,
        cast(sum(case when is_change then 1 else 0 end) over (
            partition by person_id order by export_date rows unbounded preceding
        ) as integer) as period_no
    from changes

),

periods as (

    select
        person_id,
        period_no,
        arg_min(color, export_date) as color,
        arg_min(code_color, export_date) as code_color,
        arg_min(color_since, export_date) as color_since,
        arg_min(file_name, export_date) as source_file,
        arg_min(record_uid, export_date) as record_uid,
        min(export_date) as first_export_on,
        max(export_date) as last_export_on,
        count(*) as export_count
    from numbered
    group by person_id, period_no

),

bounded as (

    select
        *,
        -- a period never starts before the one it follows (color_since may be stale in a file)
        greatest(
            color_since,
            coalesce(max(color_since) over (
                partition by person_id order by period_no rows between unbounded preceding and 1 preceding
            ), color_since)
        ) as valid_from
    from periods

),

final as (

    select
        person_id,
        period_no,
        color,
        code_color,
        valid_from,
        lead(valid_from) over (partition by person_id order by period_no) as valid_to,
        lead(valid_from) over (partition by person_id order by period_no) is null as is_current,
        source_file,
        record_uid,
        first_export_on,
        last_export_on,
        export_count
    from bounded

)

select * from final order by person_id, period_no
