-- analyst mart.validation_summary: per silo table, rows validated and held back in quarantine.
select
    source,
    entity,
    count(*) as runs,
    sum(rows_in) as rows_in,
    sum(rows_passed) as rows_passed,
    sum(rows_quarantined) as rows_quarantined,
    sum(rows_warned) as rows_warned,
    max(finished_at) as last_run_at
from meta.validation_runs
group by source, entity
