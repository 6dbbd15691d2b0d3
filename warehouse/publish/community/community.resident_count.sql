-- community community.resident_count: residents (one person, one record) and special-group
-- residents of the community. grain: one row per community.
select
    community_code,
    any_value(community_name) as community_name,
    count(*) filter (where is_resident) as residents,
    count(*) filter (where is_resident and is_special_group) as special
from core.person
where community_code is not null
group by community_code
