-- core.data_issue_finding: every live source record whose value disagrees with its merged person (or
-- with the grid registry's record of that person), or whose ID number is invalid, in full values.
-- grain: one row per record x problem; key (record_uid, problem); person_id the person it belongs to.
-- incremental key: person_id (a merge refreshes only the persons it touched; see warehouse/models)
-- Full values (IDs, phones, names, birth dates): engineers' warehouse only. Community staff get the
-- masked, grouped form, warehouse/publish/community/community.data_issue.sql, which reads only this
-- table, core.person and core.household: the heavy join over every link and record runs here,
-- for the persons a merge touched, instead of in full on every publish (issue #13).
-- Every value is a function of the person's own records and golden values: a record that changes
-- touches its person (warehouse/merge.py _touched_persons), so untouched persons' rows still hold.
-- Persons outside any community are kept too (the publish drops them), so a person moving into a
-- community without being touched could not miss their rows.
create or replace table core.data_issue_finding as

with

links as (

    select * from core.person_source

),

records as materialized (

    -- every live record with the merged person's values it is held against
    select
        records.record_uid,
        records.source,
        records.record_key,
        records.name_std,
        records.id_std,
        records.id_kind,
        records.birth_date,
        records.phone_std,
        records.phone_kind,
        records.seen_at,
        links.person_id,
        person.name as person_name,
        person.id_number as golden_id,
        person.birth_date as golden_birth_date
    from links
    join core.person as person on person.person_id = links.person_id
    join staging.stg_person_records as records on records.record_uid = links.record_uid
    where not records.is_deleted

),

registry as materialized (

    -- the grid registry's own record of each person: what the other silos are held against (its
    -- latest record where it holds two, chosen the same way every run so the result stays stable)
    select
        person_id,
        first(name_std order by seen_at desc nulls last, record_key) as name_std,
        first(phone_std order by seen_at desc nulls last, record_key) as phone_std
    from records
    where source = 'grid_registry.residents'
    group by person_id

),

invalid as (

    select * from records where id_kind = 'invalid'

),

raw_ids as (

    -- the ID as each silo wrote it (only for invalid ones: the reason needs the digits)
    select 'grid_registry.residents' as source, resident_id as record_key, id_number as id_raw
    from staging.stg_grid_registry__residents
    where resident_id in (select record_key from invalid where source = 'grid_registry.residents')
    union all
    select 'health_codes.exports', record_key, id_number
    from staging.stg_health_codes__exports
    where record_key in (select record_key from invalid where source = 'health_codes.exports')

),

invalid_ids as (

    select invalid.*, ids.id_clean
    from invalid
    join raw_ids using (source, record_key)
    join staging.stg_ids as ids on ids.id_raw = raw_ids.id_raw

)

select
    record_uid, source, record_key, seen_at, person_id, person_name,
    case
        when not regexp_full_match(id_clean, '[0-9]{17}[0-9X]|[0-9]{15}') then '身份证号位数或字符不对'
        when not std_id_division_known(substr(id_clean, 1, 6)) then '身份证号前6位地区码不存在'
        when std_id_birth_date(std_id_body17(id_clean)) is null then '身份证号中的出生日期不存在'
        else '身份证号校验位错误'
    end as problem,
    cast(null as varchar) as compared_with,
    id_clean as value_full,
    -- the merged person's valid number, if another silo holds one
    golden_id as other_full
from invalid_ids

union all

select
    records.record_uid, records.source, records.record_key, records.seen_at, records.person_id,
    records.person_name,
    '手机号与网格登记不一致',
    'grid_registry.residents',
    records.phone_std,
    registry.phone_std
from records
join registry using (person_id)
where records.source <> 'grid_registry.residents'
  and records.phone_kind = 'mobile' and registry.phone_std like '1%'
  and records.phone_std <> registry.phone_std

union all

select
    records.record_uid, records.source, records.record_key, records.seen_at, records.person_id,
    records.person_name,
    case when registry.name_std is not null then '姓名与网格登记不一致' else '姓名与其他系统不一致' end,
    case when registry.name_std is not null then 'grid_registry.residents' end,
    records.name_std,
    coalesce(registry.name_std, records.person_name)
from records
left join registry using (person_id)
where records.source <> 'grid_registry.residents'
  and records.name_std is not null
  and records.name_std <> coalesce(registry.name_std, records.person_name)

union all

select
    record_uid, source, record_key, seen_at, person_id, person_name,
    '身份证号与合并档案不一致',
    null,
    id_std,
    golden_id
from records
where id_std is not null and golden_id is not null and id_std <> golden_id

union all

-- dates as yyyymmdd: the publish shows the year only (all but the last 4 characters)
select
    record_uid, source, record_key, seen_at, person_id, person_name,
    '出生日期与合并档案不一致',
    null,
    strftime(birth_date, '%Y%m%d'),
    strftime(golden_birth_date, '%Y%m%d')
from records
where birth_date is not null and golden_birth_date is not null and birth_date <> golden_birth_date
