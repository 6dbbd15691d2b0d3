-- community community.data_issue: the community's records that disagree with the merged person or
-- fail ID checks, to check on the next visit (values masked in the mart). grain: record × field × issue.
select
    grid.community_code,
    issues.community_name,
    issues.source,
    issues.record_key,
    issues.field,
    issues.source_value,
    issues.golden_value,
    issues.issue,
    issues.seen_on
from mart.source_quality_issues as issues
join core.grid as grid on grid.grid_code = issues.grid_code
where grid.community_code is not null
