-- analyst mart.special_group_roster: who is in a special group, by place, as pseudonyms: no name,
-- ID, phone or address; a 5-year age band instead of the birth date.
select
    person_key,
    sex,
    onenet_age_band(birth_date, as_of_on) as age_band,
    group_types,
    group_types_text,
    residence_type,
    grid_code,
    grid_name,
    community_code,
    community_name,
    street_name,
    code_color,
    code_color_since,
    as_of_on
from mart.special_group_roster
