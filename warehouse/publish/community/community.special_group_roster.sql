-- community community.special_group_roster: who needs a visit, how to reach them (the freshest
-- phone of any silo), where they live; the ID masked, no birth date. grain: one row per person.
select
    community_code,
    community_name,
    person_key,
    name,
    group_types_text,
    onenet_mask_id(id_number) as id_number,
    coalesce(latest_contact_phone, phone) as phone,
    latest_contact_source,
    latest_contact_at,
    grid_code,
    grid_name,
    household_address,
    code_color
from mart.special_group_roster
where community_code is not null
