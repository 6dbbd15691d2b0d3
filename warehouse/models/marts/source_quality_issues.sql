-- mart.source_quality_issues: source records to hand back to each silo's owner, one problem per row.
-- grain: one row per source record x field x issue; key (source, record_key, field, issue).
-- Issues:
--   invalid_id             an ID number that is present, not masked, and not a valid GB 11643 number
--   disagrees_with_golden  the record's valid ID, name or birth date differs from its golden person
--   back_dated_change      a reconciliation found the record changed with an updated_at behind the
--                          cursor (older than the watermark minus the overlap): the silo's clock
--   silent_change          a reconciliation found the record changed without its updated_at moving
-- (the clock issues cover every table a reconciliation compares, persons or not; field updated_at,
-- source_value = the record's updated_at, seconds_behind_watermark = how late it arrived)
-- Values are masked here already (ID: first 6 + last 4; name: surname + *; birth date: year), so
-- the list can go to a silo's owner as it is; person_key says which golden person is meant.
create or replace table mart.source_quality_issues as

with

person_records as (

    select * from staging.stg_person_records

),

clock_findings as (

    -- the latest finding per record and kind, from every reconciliation (meta.reconciliation_keys)
    select *
    from meta.reconciliation_keys
    where kind in ('back_dated', 'silent_change')
    qualify row_number() over (partition by source, entity, record_key, kind order by found_at desc) = 1

),

person_source as (

    select * from core.person_source

),

persons as (

    select * from core.person

),

records as (

    select
        person_records.source,
        person_records.record_key,
        person_records.seen_at,
        person_records.id_kind,
        person_records.id_prefix6,
        person_records.id_suffix4,
        person_records.id_std,
        person_records.name_std,
        person_records.birth_date,
        persons.person_key,
        -- the golden person places the record (only registry rows carry a grid of their own)
        persons.grid_code,
        persons.community_name,
        persons.id_number as golden_id_number,
        persons.name as golden_name,
        persons.birth_date as golden_birth_date
    from person_records
    left join person_source on person_source.record_uid = person_records.record_uid
    left join persons on persons.person_id = person_source.person_id

),

issues as (

    select
        source, record_key, person_key, grid_code, community_name, seen_at,
        'id_number' as field,
        'invalid_id' as issue,
        coalesce(id_prefix6, '******') || '********' || coalesce(id_suffix4, '****') as source_value,
        cast(null as varchar) as golden_value
    from records
    where id_kind = 'invalid'

    union all

    select
        source, record_key, person_key, grid_code, community_name, seen_at,
        'id_number', 'disagrees_with_golden',
        left(id_std, 6) || '********' || right(id_std, 4),
        left(golden_id_number, 6) || '********' || right(golden_id_number, 4)
    from records
    where id_std is not null and golden_id_number is not null and id_std <> golden_id_number

    union all

    select
        source, record_key, person_key, grid_code, community_name, seen_at,
        'name', 'disagrees_with_golden',
        left(name_std, 1) || repeat('*', greatest(length(name_std) - 1, 0)),
        left(golden_name, 1) || repeat('*', greatest(length(golden_name) - 1, 0))
    from records
    where name_std is not null and golden_name is not null and name_std <> golden_name

    union all

    select
        source, record_key, person_key, grid_code, community_name, seen_at,
        'birth_date', 'disagrees_with_golden',
        strftime(birth_date, '%Y') || '-**-**',
        strftime(golden_birth_date, '%Y') || '-**-**'
    from records
    where birth_date is not null and golden_birth_date is not null and birth_date <> golden_birth_date

),

clock_issues as (

    select
        clock_findings.source || '.' || clock_findings.entity as source,
        clock_findings.record_key,
        persons.person_key,
        -- for the silo's owner, not for a community's visit list (community.data_issue, built from
        -- the full values in the publish policy): no grid, no community
        cast(null as varchar) as grid_code,
        cast(null as varchar) as community_name,
        clock_findings.found_at as seen_at,
        'updated_at' as field,
        case clock_findings.kind when 'back_dated' then 'back_dated_change' else 'silent_change' end as issue,
        strftime(timezone('Asia/Shanghai', clock_findings.source_updated_at), '%Y-%m-%d %H:%M:%S') as source_value,
        cast(null as varchar) as golden_value,
        clock_findings.seconds_behind_watermark
    from clock_findings
    left join person_source
        on person_source.record_uid = clock_findings.source || '.' || clock_findings.entity || ':'
            || clock_findings.record_key
    left join persons on persons.person_id = person_source.person_id

),

all_issues as (

    select *, cast(null as double) as seconds_behind_watermark from issues
    union all by name
    select * from clock_issues

),

final as (

    select
        source,
        record_key,
        field,
        issue,
        source_value,
        golden_value,
        person_key,
        grid_code,
        community_name,
        seen_at,
        cast(timezone('Asia/Shanghai', seen_at) as date) as seen_on,
        seconds_behind_watermark
    from all_issues

)

select * from final order by source, record_key, field, issue
