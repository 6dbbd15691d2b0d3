-- analyst mart.source_quality_issues: which record of which silo disagrees, and how; the values
-- themselves (masked names, IDs, phones) stay with the community and the engineers.
select source, record_key, field, issue, person_key, grid_code, community_name, seen_at, seen_on
from mart.source_quality_issues
