-- city city.district: which district published this (one row), from the registry's grid hierarchy.
select district_code, district_name,
       (select count(*) from core.person) as persons,
       (select count(*) from core.ticket) as tickets
from core.grid
where grid_level = 'district'
order by grid_code
limit 1
