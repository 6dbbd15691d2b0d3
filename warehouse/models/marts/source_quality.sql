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

final as (

    select
        record_counts.source,
        record_counts.records,
        record_counts.persons,
        record_counts.with_id,
        record_counts.invalid_ids,
        record_counts.masked_ids,
        record_counts.missing_phones,
        coalesce(issue_counts.disagreeing_records, 0) as disagreeing_records,
        coalesce(issue_counts.id_disagreements, 0) as id_disagreements,
        coalesce(issue_counts.name_disagreements, 0) as name_disagreements,
        coalesce(issue_counts.birth_date_disagreements, 0) as birth_date_disagreements,
        record_counts.invalid_ids / record_counts.records as invalid_id_rate,
        coalesce(issue_counts.disagreeing_records, 0) / record_counts.records as disagreement_rate
    from record_counts
    left join issue_counts on issue_counts.source = record_counts.source

)

select * from final order by source
