-- mart.grid_daily: block data (块数据): each micro-grid's day.
-- grain: one row per micro-grid x Beijing day, over the data's own date range (first to last day
-- with a ticket, a case or a health-code export); key (grid_code, day_on).
--   residents                 registry residents living in the grid that day (moved in, not deleted;
--                             distinct golden persons)
--   special_group_residents   of them, those in a special group by that day
--   new_tickets               hotline orders received that day placed in the grid
--   open_cases                city cases reported by that day and not closed by its end
--   green/yellow/red_codes    persons of the grid (core.person.grid_code) by health-code colour at
--                             the end of the day (those with no export yet are not counted)
--   data_issues               mart.source_quality_issues rows of the grid's persons, records seen that day
create or replace table mart.grid_daily as

with

grids as (

    select * from core.grid where is_micro

),

tickets as (

    select * from core.ticket

),

cases as (

    select * from core.city_case

),

persons as (

    select * from core.person

),

health_periods as (

    select * from core.health_status_history

),

residents as (

    select * from staging.stg_grid_registry__residents

),

special_groups as (

    select * from staging.stg_grid_registry__special_groups

),

households as (

    select * from core.household

),

person_source as (

    select * from core.person_source where source = 'grid_registry.residents'

),

issues as (

    select * from mart.source_quality_issues

),

exports as (

    select distinct export_date from staging.stg_health_codes__exports

),

bounds as (

    select min(day_on) as first_on, max(day_on) as last_on
    from (
        select received_on as day_on from tickets
        union all select reported_on from cases
        union all select export_date from exports
    )

),

days as (

    select cast(unnest(generate_series(first_on, last_on, interval 1 day)) as date) as day_on
    from bounds

),

grid_days as (

    select
        grids.grid_code,
        days.day_on,
        timezone('Asia/Shanghai', cast(days.day_on + 1 as timestamp)) as day_end_at
    from grids
    cross join days

),

resident_spans as (

    select
        person_source.person_id,
        households.grid_code,
        residents.resident_id,
        coalesce(residents.moved_in_on, date '1900-01-01') as from_on,
        case when coalesce(residents.is_deleted, false)
            then coalesce(cast(timezone('Asia/Shanghai', residents.deleted_at) as date), date '1900-01-01')
        end as until_on
    from residents
    join households on households.household_id = residents.household_id
    left join person_source on person_source.record_key = residents.resident_id

),

resident_groups as (

    select resident_id, min(coalesce(since, date '1900-01-01')) as group_since
    from special_groups
    group by resident_id

),

resident_counts as (

    select
        grid_days.grid_code,
        grid_days.day_on,
        count(distinct coalesce(resident_spans.person_id, resident_spans.resident_id)) as residents,
        count(distinct coalesce(resident_spans.person_id, resident_spans.resident_id))
            filter (where resident_groups.group_since <= grid_days.day_on) as special_group_residents
    from grid_days
    join resident_spans
        on resident_spans.grid_code = grid_days.grid_code
        and resident_spans.from_on <= grid_days.day_on
        and (resident_spans.until_on is null or resident_spans.until_on > grid_days.day_on)
    left join resident_groups on resident_groups.resident_id = resident_spans.resident_id
    group by all

),

ticket_counts as (

    select grid_code, received_on as day_on, count(*) as new_tickets
    from tickets
    where grid_code is not null
    group by all

),

case_counts as (

    select grid_days.grid_code, grid_days.day_on, count(*) as open_cases
    from grid_days
    join cases
        on cases.grid_code = grid_days.grid_code
        and cases.reported_on <= grid_days.day_on
        and (cases.closed_on is null or cases.closed_on > grid_days.day_on)
    group by all

),

code_counts as (

    select
        grid_days.grid_code,
        grid_days.day_on,
        count(*) filter (where health_periods.color = 'green') as green_codes,
        count(*) filter (where health_periods.color = 'yellow') as yellow_codes,
        count(*) filter (where health_periods.color = 'red') as red_codes
    from grid_days
    join persons on persons.grid_code = grid_days.grid_code
    join health_periods
        on health_periods.person_id = persons.person_id
        and health_periods.valid_from < grid_days.day_end_at
        and (health_periods.valid_to is null or health_periods.valid_to >= grid_days.day_end_at)
    group by all

),

issue_counts as (

    select grid_code, seen_on as day_on, count(*) as data_issues
    from issues
    where grid_code is not null
    group by all

),

final as (

    select
        grid_days.grid_code,
        grid_days.day_on,
        grids.grid_name,
        grids.area_code,
        grids.community_code,
        grids.community_name,
        grids.street_name,
        coalesce(resident_counts.residents, 0) as residents,
        coalesce(resident_counts.special_group_residents, 0) as special_group_residents,
        coalesce(ticket_counts.new_tickets, 0) as new_tickets,
        coalesce(case_counts.open_cases, 0) as open_cases,
        coalesce(code_counts.green_codes, 0) as green_codes,
        coalesce(code_counts.yellow_codes, 0) as yellow_codes,
        coalesce(code_counts.red_codes, 0) as red_codes,
        coalesce(issue_counts.data_issues, 0) as data_issues
    from grid_days
    join grids on grids.grid_code = grid_days.grid_code
    left join resident_counts
        on resident_counts.grid_code = grid_days.grid_code and resident_counts.day_on = grid_days.day_on
    left join ticket_counts
        on ticket_counts.grid_code = grid_days.grid_code and ticket_counts.day_on = grid_days.day_on
    left join case_counts
        on case_counts.grid_code = grid_days.grid_code and case_counts.day_on = grid_days.day_on
    left join code_counts
        on code_counts.grid_code = grid_days.grid_code and code_counts.day_on = grid_days.day_on
    left join issue_counts
        on issue_counts.grid_code = grid_days.grid_code and issue_counts.day_on = grid_days.day_on

)

select * from final order by grid_code, day_on
