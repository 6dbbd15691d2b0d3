-- 数据待核: records of the given communities that disagree with the merged person or fail ID checks.
-- grain: one row per record × field × issue; values already masked by mart.source_quality_issues.
-- parameters $communities (a list of codes), $day.
select
    issues.community_code,
    case issues.source
        when 'grid_registry.residents' then '网格管理系统'
        when 'grid_registry.grid_workers' then '网格管理系统（网格员）'
        when 'health_codes.exports' then '健康码平台'
        when 'hotline.tickets' then '12345热线'
        when 'city_cases.cases' then '数字城管'
        else issues.source
    end as source_name,
    issues.record_key,
    issues.field,
    issues.source_value,
    issues.golden_value,
    issues.issue
from community.data_issue as issues
where issues.community_code in (select unnest($communities)) and issues.seen_on <= $day
order by issues.community_code, issues.source, issues.record_key, issues.field, issues.issue
