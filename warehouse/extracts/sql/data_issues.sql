-- 数据待核: what to check on the next visit in the given communities, one row per fix, in Chinese
-- (community.data_issue: the values already masked so only their difference shows).
-- grain: one row per community x problem x silo x wrong value; parameters $communities (codes), $day.
-- The fixes that touch the most residents first.
select
    checks.community_code,
    checks.problem,
    checks.silos,
    checks.value_shown,
    checks.other_shown,
    checks.detail,
    checks.action,
    checks.residents,
    checks.names,
    checks.addresses,
    checks.record_keys
from community.data_issue as checks
where checks.community_code in (select unnest($communities)) and checks.seen_on <= $day
order by checks.community_code, checks.residents desc, checks.records desc, checks.problem, checks.silos,
    checks.names, checks.record_keys
