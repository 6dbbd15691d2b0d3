-- community community.special_group_roster: who needs a visit, how to reach them (the freshest
-- phone of any silo), where they live (the standardised address, and as written where it differs);
-- the ID masked, no birth date. grain: one row per person.
select
    roster.community_code,
    roster.community_name,
    roster.person_key,
    roster.name,
    roster.group_types_text,
    onenet_mask_id(roster.id_number) as id_number,
    coalesce(roster.latest_contact_phone, roster.phone) as phone,
    roster.latest_contact_source,
    roster.latest_contact_at,
    roster.grid_code,
    roster.grid_name,
    roster.household_address,
    onenet_address_std(household.address_key) as address_std,
    onenet_address_as_written(roster.household_address, household.address_key) as address_as_written,
    roster.code_color
from mart.special_group_roster as roster
left join core.household as household on household.household_id = roster.household_id
where roster.community_code is not null
