-- mart.source_quality: how good each silo's person data is, measured against the golden persons.
-- grain: one row per source (record type, e.g. 'hotline.tickets'); key source.
--   records              person-like records of the source
--   persons              distinct golden persons they resolve to
--   with_id              records carrying an ID number in any form (valid, legacy15, masked, invalid)
--   invalid_ids          IDs present, not masked, not valid (see mart.source_quality_issues)
--   masked_ids           IDs only kept as prefix + suffix
--   missing_phones       records without a usable phone number
--   disagreeing_records  records whose valid ID, name or birth date differs from their golden person
--   *_disagreements      the same per field
--   back_dated_changes   records a reconciliation found changed behind the cursor (the silo's clock)
--   silent_changes       records a reconciliation found changed without updated_at moving
--   max_hours_behind_watermark  how far behind the watermark the latest of those changes arrived
-- A table a reconciliation found clock problems in has a row even without person records
-- (e.g. grid_registry.households); its person counts are 0.
create or replace table mart.source_quality as

with

person_records as (

    select * from staging.stg_person_records

),

person_source as (

    select * from core.person_source

),

issues as (

    select * from mart.source_quality_issues

),

record_counts as (

    select
        person_records.source,
        count(*) as records,
        count(distinct person_source.person_id) as persons,
        count(*) filter (where coalesce(person_records.id_kind, 'missing') <> 'missing') as with_id,
        count(*) filter (where person_records.id_kind = 'invalid') as invalid_ids,
        count(*) filter (where person_records.id_kind = 'masked') as masked_ids,
        count(*) filter (where person_records.phone_std is null) as missing_phones
    from person_records
    left join person_source on person_source.record_uid = person_records.record_uid
    group by person_records.source

),

issue_counts as (

    select
        source,
        count(distinct record_key) filter (where issue = 'disagrees_with_golden') as disagreeing_records,
        count(*) filter (where issue = 'disagrees_with_golden' and field = 'id_number') as id_disagreements,
        count(*) filter (where issue = 'disagrees_with_golden' and field = 'name') as name_disagreements,
        count(*) filter (where issue = 'disagrees_with_golden' and field = 'birth_date')
            as birth_date_disagreements
    from issues
    group by source

),

clock_counts as (

    select
        source,
        count(*) filter (where issue = 'back_dated_change') as back_dated_changes,
        count(*) filter (where issue = 'silent_change') as silent_changes,
        max(seconds_behind_watermark) / 3600 as max_hours_behind_watermark
    from issues
    where issue in ('back_dated_change', 'silent_change')
    group by source

),

sources as (

    select source from record_counts
    union
    select source from clock_counts

),

final as (

    select
        sources.source,
        coalesce(record_counts.records, 0) as records,
        coalesce(record_counts.persons, 0) as persons,
        coalesce(record_counts.with_id, 0) as with_id,
        coalesce(record_counts.invalid_ids, 0) as invalid_ids,
        coalesce(record_counts.masked_ids, 0) as masked_ids,
        coalesce(record_counts.missing_phones, 0) as missing_phones,
        coalesce(issue_counts.disagreeing_records, 0) as disagreeing_records,
        coalesce(issue_counts.id_disagreements, 0) as id_disagreements,
        coalesce(issue_counts.name_disagreements, 0) as name_disagreements,
        coalesce(issue_counts.birth_date_disagreements, 0) as birth_date_disagreements,
        record_counts.invalid_ids / nullif(record_counts.records, 0) as invalid_id_rate,
        coalesce(issue_counts.disagreeing_records, 0) / nullif(record_counts.records, 0) as disagreement_rate,
        coalesce(clock_counts.back_dated_changes, 0) as back_dated_changes,
        coalesce(clock_counts.silent_changes, 0) as silent_changes,
        clock_counts.max_hours_behind_watermark
    from sources
    left join record_counts on record_counts.source = sources.source
    left join issue_counts on issue_counts.source = sources.source
    left join clock_counts on clock_counts.source = sources.source

)

select * from final order by source
