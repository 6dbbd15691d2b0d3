-- community community.data_issue: what to check on the next home visit, in Chinese, one row per
-- thing to fix (a wrong value in one silo, however many of its records or residents carry it),
-- ordered by how many residents the fix touches. The comparison runs in the merge, on the full
-- values (core.data_issue_finding, refreshed for the persons a merge touched); only their masked
-- forms leave here (onenet_show_diff: the differing digits of a phone, the differing character of a
-- name; IDs first 6 + last 4 with the reason they fail; birth years, never a date).
-- grain: one row per community x problem x silo x (full) silo value x (full) value it disagrees with.
with

named as (

    -- where each resident with a finding lives (persons outside any community are not published)
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
    from core.data_issue_finding as findings
    join core.person as person on person.person_id = findings.person_id
    left join core.household as household on household.household_id = person.household_id
    where person.community_code is not null

),

grouped as (

    -- one fix per silo and wrong value: all its records and residents together
    select
        community_code,
        any_value(community_name) as community_name,
        problem,
        source_name,
        any_value(compared_with) as compared_with,
        value_full,
        other_full,
        -- lists sorted after grouping: the same as ordered distinct aggregates, without a sort per group
        len(list_distinct(list(person_id))) as residents,
        len(list_distinct(list(record_uid))) as records,
        case when count(person_name) > 0 then array_to_string(list_sort(list_distinct(list(person_name))), '、') end
            as names,
        case when count(grid_name) > 0 then array_to_string(list_sort(list_distinct(list(grid_name))), '、') end
            as grids,
        case when count(address) > 0 then array_to_string(list_sort(list_distinct(list(address))), '、') end
            as addresses,
        -- the first three record numbers and how many there are: enough to find them in the silo
        array_to_string(list_slice(list_sort(list_distinct(list(record_key))), 1, 3), '、')
            || case when len(list_distinct(list(record_key))) > 3
                    then ' 等' || len(list_distinct(list(record_key))) || '条' else '' end
            as record_keys,
        cast(timezone('Asia/Shanghai', min(seen_at)) as date) as seen_on
    from named
    group by community_code, problem, source, source_name, value_full, other_full

),

shown as (

    -- the masked forms, from the full values of each fix (v: the silo's, o: the one it disagrees with)
    select
        *,
        problem like '姓名%' and length(value_full) <> length(other_full) as name_lengths_differ,
        problem like '手机号%' and length(value_full) = length(other_full)
            and onenet_diff_count(value_full, other_full) <= 4 as phone_close
    from grouped

)

select
    community_code,
    community_name,
    problem,
    source_name || case when compared_with = 'grid_registry.residents' then ' ↔ 网格管理系统' else '' end as silos,
    onenet_show_compared(problem, value_full, other_full, phone_close, name_lengths_differ) as value_shown,
    onenet_show_compared(problem, other_full, value_full, phone_close, name_lengths_differ) as other_shown,
    case problem
        when '身份证号位数或字符不对' then '共' || length(value_full) || '位，应为18位数字（末位可为X）'
        when '身份证号前6位地区码不存在' then '前6位' || substr(value_full, 1, 6) || '不是行政区划代码'
        when '身份证号中的出生日期不存在' then '第7-14位不是真实的出生日期'
        when '身份证号校验位错误' then '按国标计算末位应为另一字符，多为某一位抄错'
        when '手机号与网格登记不一致' then '相同的数字以*隐去（相差多于4位时显示前3后4位）'
        when '身份证号与合并档案不一致' then
            case when onenet_mask_id(value_full) = onenet_mask_id(other_full)
                 then '不同之处在出生日期部分（第7-14位，已隐去）'
                 else '不同之处见前6位或后4位' end
        when '出生日期与合并档案不一致' then
            case when left(value_full, length(value_full) - 4) = left(other_full, length(other_full) - 4)
                 then '同一年，月日不同（不显示出生日期）'
                 else '出生年份不同（不显示月日）' end
        else
            case when not name_lengths_differ then '相同的字以*隐去，只显示不同的字'
                 else '字数不同（' || length(value_full) || '字/' || length(other_full) || '字），只显示首字' end
    end as detail,
    case
        when problem like '身份证号%' and problem <> '身份证号与合并档案不一致' then '核对身份证原件，更正'
        when problem like '手机号%' then '问清本人常用手机号，更正'
        when problem like '姓名%' then '核对身份证原件上的姓名，更正'
        when problem like '身份证号%' then '核对身份证原件，确认哪个号码正确，更正'
        else '核对身份证原件上的出生日期，更正'
    end || source_name || case when problem like '手机号%' then '或网格登记' else '' end as action,
    residents,
    records,
    names,
    grids,
    addresses,
    record_keys,
    seen_on
from shown
