-- community community.data_issue: what to check on the next home visit, in Chinese, one row per
-- thing to fix (a wrong value in one silo, however many of its records or residents carry it),
-- ordered by how many residents the fix touches. The comparison runs here on the full values; only
-- their masked forms leave (onenet_show_diff: the differing digits of a phone, the differing
-- character of a name; IDs first 6 + last 4 with the reason they fail; birth years, never a date).
-- grain: one row per community x problem x silo x (full) silo value x (full) value it disagrees with.
with

records as materialized (

    -- every live record of a resident of a community, with the merged person's values it is held
    -- against; narrow on purpose (816k rows at 300k residents): where the resident lives is joined
    -- to the few records that disagree, in `named`
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
    from core.person_source as links
    join core.person as person on person.person_id = links.person_id
    join staging.stg_person_records as records on records.record_uid = links.record_uid
    where not records.is_deleted and person.community_code is not null

),

registry as materialized (

    -- the grid registry's own record of each person: what the other silos are held against (its
    -- latest record where it holds two, chosen the same way every run so the snapshot stays stable)
    select
        person_id,
        first(name_std order by seen_at desc nulls last, record_key) as name_std,
        first(phone_std order by seen_at desc nulls last, record_key) as phone_std
    from records
    where source = 'grid_registry.residents'
    group by person_id

),

raw_ids as (

    -- the ID as each silo wrote it (only for invalid ones: the reason needs the digits)
    select 'grid_registry.residents' as source, resident_id as record_key, id_number as id_raw
    from staging.stg_grid_registry__residents
    union all
    select 'health_codes.exports', record_key, id_number from staging.stg_health_codes__exports

),

invalid_ids as (

    select records.*, ids.id_clean
    from records
    join raw_ids using (source, record_key)
    join staging.stg_ids as ids on ids.id_raw = raw_ids.id_raw
    where records.id_kind = 'invalid'

),

findings as (

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
        golden_id as other_full,
        onenet_mask_id(id_clean) as value_shown,
        -- the merged person's valid number, if another silo holds one
        onenet_mask_id(golden_id) as other_shown,
        case
            when not regexp_full_match(id_clean, '[0-9]{17}[0-9X]|[0-9]{15}')
                then '共' || length(id_clean) || '位，应为18位数字（末位可为X）'
            when not std_id_division_known(substr(id_clean, 1, 6)) then '前6位' || substr(id_clean, 1, 6) || '不是行政区划代码'
            when std_id_birth_date(std_id_body17(id_clean)) is null then '第7-14位不是真实的出生日期'
            else '按国标计算末位应为另一字符，多为某一位抄错'
        end as detail,
        '核对身份证原件，更正' as action
    from invalid_ids

    union all

    select
        records.record_uid, records.source, records.record_key, records.seen_at, records.person_id,
        records.person_name,
        '手机号与网格登记不一致',
        'grid_registry.residents',
        records.phone_std,
        registry.phone_std,
        -- up to 4 differing digits: those digits shown, the rest hidden; else 3 + 4 kept
        case when length(records.phone_std) = length(registry.phone_std)
                  and onenet_diff_count(records.phone_std, registry.phone_std) <= 4
             then onenet_show_diff(records.phone_std, registry.phone_std)
             else left(records.phone_std, 3) || '****' || right(records.phone_std, 4) end,
        case when length(records.phone_std) = length(registry.phone_std)
                  and onenet_diff_count(records.phone_std, registry.phone_std) <= 4
             then onenet_show_diff(registry.phone_std, records.phone_std)
             else left(registry.phone_std, 3) || '****' || right(registry.phone_std, 4) end,
        '相同的数字以*隐去（相差多于4位时显示前3后4位）',
        '问清本人常用手机号，更正'
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
        coalesce(registry.name_std, records.person_name),
        case when length(records.name_std) = length(coalesce(registry.name_std, records.person_name))
             then onenet_show_diff(records.name_std, coalesce(registry.name_std, records.person_name))
             else left(records.name_std, 1) || repeat('*', length(records.name_std) - 1) end,
        case when length(records.name_std) = length(coalesce(registry.name_std, records.person_name))
             then onenet_show_diff(coalesce(registry.name_std, records.person_name), records.name_std)
             else left(coalesce(registry.name_std, records.person_name), 1)
                  || repeat('*', length(coalesce(registry.name_std, records.person_name)) - 1) end,
        case when length(records.name_std) = length(coalesce(registry.name_std, records.person_name))
             then '相同的字以*隐去，只显示不同的字'
             else '字数不同（' || length(records.name_std) || '字/'
                  || length(coalesce(registry.name_std, records.person_name)) || '字），只显示首字' end,
        '核对身份证原件上的姓名，更正'
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
        golden_id,
        onenet_mask_id(id_std),
        onenet_mask_id(golden_id),
        case when onenet_mask_id(id_std) = onenet_mask_id(golden_id)
             then '不同之处在出生日期部分（第7-14位，已隐去）'
             else '不同之处见前6位或后4位' end,
        '核对身份证原件，确认哪个号码正确，更正'
    from records
    where id_std is not null and golden_id is not null and id_std <> golden_id

    union all

    select
        record_uid, source, record_key, seen_at, person_id, person_name,
        '出生日期与合并档案不一致',
        null,
        strftime(birth_date, '%Y%m%d'),
        strftime(golden_birth_date, '%Y%m%d'),
        strftime(birth_date, '%Y') || '年',
        strftime(golden_birth_date, '%Y') || '年',
        case when year(birth_date) = year(golden_birth_date) then '同一年，月日不同（不显示出生日期）'
             else '出生年份不同（不显示月日）' end,
        '核对身份证原件上的出生日期，更正'
    from records
    where birth_date is not null and golden_birth_date is not null and birth_date <> golden_birth_date

),

named as (

    select
        findings.*,
        person.community_code,
        person.community_name,
        person.grid_name,
        case findings.source
            when 'grid_registry.residents' then '网格管理系统'
            when 'grid_registry.grid_workers' then '网格管理系统（网格员）'
            when 'health_codes.exports' then '健康码平台'
            when 'hotline.tickets' then '12345热线'
            when 'city_cases.cases' then '数字城管'
            else findings.source
        end as source_name,
        onenet_address_std(household.address_key) as address
    from findings
    join core.person as person on person.person_id = findings.person_id
    left join core.household as household on household.household_id = person.household_id

),

grouped as (

    -- one fix per silo and wrong value: all its records and residents together
    select
        community_code,
        any_value(community_name) as community_name,
        problem,
        source_name
            || case when any_value(compared_with) = 'grid_registry.residents' then ' ↔ 网格管理系统' else '' end
            as silos,
        any_value(value_shown) as value_shown,
        any_value(other_shown) as other_shown,
        any_value(detail) as detail,
        any_value(action) || source_name || case when problem like '手机号%' then '或网格登记' else '' end as action,
        count(distinct person_id) as residents,
        count(distinct record_uid) as records,
        string_agg(distinct person_name, '、' order by person_name) as names,
        string_agg(distinct grid_name, '、' order by grid_name) as grids,
        string_agg(distinct address, '、' order by address) as addresses,
        -- the first three record numbers and how many there are: enough to find them in the silo
        array_to_string(list_slice(array_agg(distinct record_key order by record_key), 1, 3), '、')
            || case when count(distinct record_key) > 3 then ' 等' || count(distinct record_key) || '条' else '' end
            as record_keys,
        cast(timezone('Asia/Shanghai', min(seen_at)) as date) as seen_on
    from named
    group by community_code, problem, source, source_name, value_full, other_full

)

select * from grouped
