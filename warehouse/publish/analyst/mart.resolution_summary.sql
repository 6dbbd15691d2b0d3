-- analyst mart.resolution_summary: per silo, how many records became how many golden persons.
select source, count(*) as records, count(distinct person_id) as persons
from core.person_source
group by source
