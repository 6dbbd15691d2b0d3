-- city city.place: the district's streets and communities by name, so the city can tell which
-- district a ticket's street or address names. grain: one row per community; key community_code.
select street_code, street_name, community_code, community_name
from core.grid
where grid_level = 'community'
order by community_code
