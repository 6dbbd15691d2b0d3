-- mart.grid_daily: block data (块数据): each micro-grid's day.
-- grain: one row per micro-grid x Beijing day, over the data's own date range (first to last day
-- with a ticket, a case or a health-code export); key (grid_code, day_on).
--   residents                 registry residents living in the grid that day (moved in, not deleted;
--                             distinct golden persons), in the household the registry had for them
--                             that day: the registry moves a resident by updating the row, and each
--                             version holds from the Beijing day of its change (updated_at, else when it
--                             landed) until a newer version's, so a move leaves the days before it as
--                             they were
--   special_group_residents   of them, those in a special group by that day
--   new_tickets               hotline orders received that day placed in the grid
--   open_cases                city cases reported by that day and not closed by its end
--   green/yellow/red_codes    persons living in the grid that day by health-code colour at the end of
--                             the day (those with no export yet are not counted); where a person is
--                             registered more than once, the registration moved into last that covers
--                             the day decides the grid, so a move or a deletion leaves past days as they
--                             were (counting by today's grid restated every past day of every grid a
--                             resident left, and every community republished, issue #13)
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

    select grids.grid_code, days.day_on
    from grids
    cross join days

),

load_order as (

    select load_id, load_seq from meta.loads

),

-- a registration's households over time: its current row (staging's latest version) and the older
-- versions landed before it, newest first in the order staging picks the latest by
resident_versions as (

    select resident_id, household_id, changed_on, version_rank
    from (
        select
            versions.resident_id,
            versions.household_id,
            cast(timezone('Asia/Shanghai', coalesce(versions.updated_at, versions._extracted_at)) as date)
                as changed_on,
            row_number() over (
                partition by versions.resident_id
                order by load_order.load_seq desc nulls last, versions.updated_at desc nulls last,
                    versions._extracted_at desc, versions._load_id desc, versions._record_hash desc
            ) as version_rank
        from staging.grid_registry_residents as versions
        left join load_order on load_order.load_id = versions._load_id
        where versions._record_hash <> 'tombstone'
    )
    where version_rank > 1
    union all
    select
        resident_id,
        household_id,
        cast(timezone('Asia/Shanghai', coalesce(updated_at, _extracted_at)) as date) as changed_on,
        1 as version_rank
    from residents

),

-- a version holds on a day when it is the newest changed by that day (the oldest before any was):
-- from its change day (the oldest: always) until the earliest change day of the newer versions
household_spans as (

    select
        resident_id,
        household_id,
        case when version_rank < max(version_rank) over (partition by resident_id) then changed_on end
            as held_from,
        min(changed_on) over (
            partition by resident_id order by version_rank
            rows between unbounded preceding and 1 preceding
        ) as held_until
    from resident_versions

),

resident_spans as (

    select
        person_source.person_id,
        households.grid_code,
        residents.resident_id,
        -- the registration's own start: of a person's registrations, the one moved into last counts
        coalesce(residents.moved_in_on, date '1900-01-01') as moved_in_on,
        greatest(coalesce(residents.moved_in_on, date '1900-01-01'),
                 coalesce(household_spans.held_from, date '1900-01-01')) as from_on,
        case
            when coalesce(residents.is_deleted, false) then least(
                coalesce(cast(timezone('Asia/Shanghai', residents.deleted_at) as date), date '1900-01-01'),
                coalesce(household_spans.held_until, date '9999-12-31'))
            else household_spans.held_until
        end as until_on
    from residents
    join household_spans on household_spans.resident_id = residents.resident_id
    join households on households.household_id = household_spans.household_id
    left join person_source on person_source.record_key = residents.resident_id

),

resident_groups as (

    select resident_id, min(coalesce(since, date '1900-01-01')) as group_since
    from special_groups
    group by resident_id

),

-- Every figure below is a count of intervals of days [start_on, end_on) (end_on null: still open)
-- covering the day. Counting them with +1/-1 events and a running sum keeps the work O(records);
-- joining records to every grid day on the range conditions was O(records x days) (issue #8).

-- residents and special_group_residents count distinct identities: one interval per resident span
-- (a special-group span starts when both the span and the group have started)
identity_intervals as (

    select
        'residents' as measure,
        grid_code,
        coalesce(person_id, resident_id) as identity_id,
        from_on as start_on,
        until_on as end_on
    from resident_spans
    union all
    select
        'special_group_residents' as measure,
        resident_spans.grid_code,
        coalesce(resident_spans.person_id, resident_spans.resident_id) as identity_id,
        greatest(resident_spans.from_on, resident_groups.group_since) as start_on,
        resident_spans.until_on as end_on
    from resident_spans
    join resident_groups on resident_groups.resident_id = resident_spans.resident_id

),

-- where each person lived, day by day: the person's registration dates cut time into segments, and
-- each segment belongs to the registration moved into last among those covering it (a stale second
-- registration never cleaned up does not count the person twice)
residence_points as (

    select distinct person_id, from_on as point_on from resident_spans where person_id is not null
    union
    select person_id, until_on from resident_spans where person_id is not null and until_on is not null

),

residence_segments as (

    select
        person_id,
        point_on as start_on,
        lead(point_on) over (partition by person_id order by point_on) as end_on
    from residence_points

),

residences as (

    select residence_segments.person_id, resident_spans.grid_code, residence_segments.start_on, residence_segments.end_on
    from residence_segments
    join resident_spans
        on resident_spans.person_id = residence_segments.person_id
        and resident_spans.from_on <= residence_segments.start_on
        and (resident_spans.until_on is null or resident_spans.until_on > residence_segments.start_on)
    qualify row_number() over (
        partition by residence_segments.person_id, residence_segments.start_on
        order by resident_spans.moved_in_on desc, resident_spans.resident_id desc
    ) = 1

),

-- open_cases and the code colours count rows, so their intervals need no merging
row_intervals as (

    select 'open_cases' as measure, grid_code, reported_on as start_on, closed_on as end_on
    from cases
    union all
    -- a period counts on day d when valid_from < day_end_at <= valid_to, day_end_at being the Beijing
    -- midnight that starts d + 1: i.e. from the Beijing date of valid_from up to, not including, the
    -- Beijing date of valid_to (a valid_to of exactly midnight still counts for the day before);
    -- cut to the days the person lived in the grid
    select
        color_periods.measure,
        residences.grid_code,
        greatest(color_periods.start_on, residences.start_on) as start_on,
        case
            when color_periods.end_on is null then residences.end_on
            when residences.end_on is null then color_periods.end_on
            else least(color_periods.end_on, residences.end_on)
        end as end_on
    from (
        select
            person_id,
            color || '_codes' as measure,
            cast(timezone('Asia/Shanghai', valid_from) as date) as start_on,
            cast(timezone('Asia/Shanghai', valid_to) as date) as end_on
        from health_periods
        where color in ('green', 'yellow', 'red') and valid_from is not null
    ) as color_periods
    join residences
        on residences.person_id = color_periods.person_id
        and (residences.end_on is null or color_periods.start_on < residences.end_on)
        and (color_periods.end_on is null or residences.start_on < color_periods.end_on)

),

-- clipped to the mart's days, as the join to grid_days clipped them; an open end ends after last_on.
-- The explicit null tests matter: greatest() and least() skip nulls, a range join does not.
clipped_identity_intervals as (

    select
        identity_intervals.measure,
        identity_intervals.grid_code,
        identity_intervals.identity_id,
        greatest(identity_intervals.start_on, bounds.first_on) as start_on,
        least(coalesce(identity_intervals.end_on, bounds.last_on + 1), bounds.last_on + 1) as end_on
    from identity_intervals
    cross join bounds
    where identity_intervals.grid_code is not null
        and identity_intervals.identity_id is not null
        and greatest(identity_intervals.start_on, bounds.first_on)
            < least(coalesce(identity_intervals.end_on, bounds.last_on + 1), bounds.last_on + 1)

),

-- gaps and islands: an identity counts once a day, so its overlapping spans in one grid are merged
-- first; a span opens a new island when it starts after every earlier span of the identity has ended
identity_island_starts as (

    select
        *,
        coalesce(
            start_on > max(end_on) over (
                partition by measure, grid_code, identity_id order by start_on, end_on
                rows between unbounded preceding and 1 preceding
            ),
            true
        ) as is_island_start
    from clipped_identity_intervals

),

identity_island_numbers as (

    select
        *,
        sum(cast(is_island_start as integer)) over (
            partition by measure, grid_code, identity_id order by start_on, end_on
            rows unbounded preceding
        ) as island_no
    from identity_island_starts

),

identity_islands as (

    select measure, grid_code, min(start_on) as start_on, max(end_on) as end_on
    from identity_island_numbers
    group by measure, grid_code, identity_id, island_no

),

clipped_row_intervals as (

    select
        row_intervals.measure,
        row_intervals.grid_code,
        greatest(row_intervals.start_on, bounds.first_on) as start_on,
        least(coalesce(row_intervals.end_on, bounds.last_on + 1), bounds.last_on + 1) as end_on
    from row_intervals
    cross join bounds
    where row_intervals.grid_code is not null
        and row_intervals.start_on is not null
        and greatest(row_intervals.start_on, bounds.first_on)
            < least(coalesce(row_intervals.end_on, bounds.last_on + 1), bounds.last_on + 1)

),

counted_intervals as (

    select * from identity_islands
    union all
    select * from clipped_row_intervals

),

-- +1 on the first day, -1 on the day after the last (none past last_on: no grid day sees it)
interval_events as (

    select counted_intervals.measure, counted_intervals.grid_code, counted_intervals.start_on as day_on, 1 as delta
    from counted_intervals
    union all
    select counted_intervals.measure, counted_intervals.grid_code, counted_intervals.end_on as day_on, -1 as delta
    from counted_intervals
    cross join bounds
    where counted_intervals.end_on <= bounds.last_on

),

daily_deltas as (

    select
        grid_code,
        day_on,
        sum(delta) filter (where measure = 'residents') as residents,
        sum(delta) filter (where measure = 'special_group_residents') as special_group_residents,
        sum(delta) filter (where measure = 'open_cases') as open_cases,
        sum(delta) filter (where measure = 'green_codes') as green_codes,
        sum(delta) filter (where measure = 'yellow_codes') as yellow_codes,
        sum(delta) filter (where measure = 'red_codes') as red_codes
    from interval_events
    group by all

),

-- the running sum of the events up to a day is the number of intervals covering it
interval_counts as (

    select
        grid_days.grid_code,
        grid_days.day_on,
        cast(sum(coalesce(daily_deltas.residents, 0)) over running as bigint) as residents,
        cast(sum(coalesce(daily_deltas.special_group_residents, 0)) over running as bigint)
            as special_group_residents,
        cast(sum(coalesce(daily_deltas.open_cases, 0)) over running as bigint) as open_cases,
        cast(sum(coalesce(daily_deltas.green_codes, 0)) over running as bigint) as green_codes,
        cast(sum(coalesce(daily_deltas.yellow_codes, 0)) over running as bigint) as yellow_codes,
        cast(sum(coalesce(daily_deltas.red_codes, 0)) over running as bigint) as red_codes
    from grid_days
    left join daily_deltas
        on daily_deltas.grid_code = grid_days.grid_code and daily_deltas.day_on = grid_days.day_on
    window running as (partition by grid_days.grid_code order by grid_days.day_on rows unbounded preceding)

),

ticket_counts as (

    select grid_code, received_on as day_on, count(*) as new_tickets
    from tickets
    where grid_code is not null
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
        interval_counts.residents,
        interval_counts.special_group_residents,
        coalesce(ticket_counts.new_tickets, 0) as new_tickets,
        interval_counts.open_cases,
        interval_counts.green_codes,
        interval_counts.yellow_codes,
        interval_counts.red_codes,
        coalesce(issue_counts.data_issues, 0) as data_issues
    from grid_days
    join grids on grids.grid_code = grid_days.grid_code
    join interval_counts
        on interval_counts.grid_code = grid_days.grid_code and interval_counts.day_on = grid_days.day_on
    left join ticket_counts
        on ticket_counts.grid_code = grid_days.grid_code and ticket_counts.day_on = grid_days.day_on
    left join issue_counts
        on issue_counts.grid_code = grid_days.grid_code and issue_counts.day_on = grid_days.day_on

)

select * from final order by grid_code, day_on
