-- analyst mart.resolution_summary: per silo, how many records became how many golden persons;
-- the row with source null is the whole district (persons counted once across silos).
select source, count(*) as records, count(distinct person_id) as persons
from core.person_source
group by grouping sets ((source), ())
