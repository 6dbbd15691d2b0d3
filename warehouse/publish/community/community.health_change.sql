-- community community.health_change: every turn of a resident's health code to yellow or red,
-- with how to reach them; the ID masked. grain: one row per person and change.
-- A period's predecessor is period_no - 1 (numbered 1, 2, ... per person, a new one at each change
-- of colour): a join of the few yellow and red periods, not a window over every period.
with periods as (
    select
        history.*,
        previous.color as previous_color
    from core.health_status_history as history
    left join core.health_status_history as previous
        on previous.person_id = history.person_id and previous.period_no = history.period_no - 1
    where history.color in ('yellow', 'red')
)
select
    person.community_code,
    person.community_name,
    person.person_key,
    person.name,
    onenet_mask_id(person.id_number) as id_number,
    person.phone,
    periods.color,
    periods.previous_color,
    periods.valid_from,
    person.grid_name,
    household.address,
    onenet_address_std(household.address_key) as address_std,
    onenet_address_as_written(household.address, household.address_key) as address_as_written
from periods
join core.person as person using (person_id)
left join core.household as household using (household_id)
where person.community_code is not null
  and periods.color in ('yellow', 'red')
  and periods.previous_color is distinct from periods.color
