-- mart.warnings: early warnings (治理变数): a place or a category whose counts rise well above
-- its own recent baseline.
-- grain: one row per scope x signal x Beijing day on which the rule fires; key
-- (scope_type, scope_key, signal, day_on).
-- Signals per day: 'tickets' (hotline orders received) per micro-grid and per category;
-- 'yellow_red_codes' (persons turning yellow or red that day) per micro-grid and per community.
-- Rule, for each day D with a full baseline:
--   recent   = the count over D-2..D (3 days)
--   baseline = the 14 days D-16..D-3: daily mean and population standard deviation
--   fires when recent >= 3 (minimum count) and recent / 3 > mean + 2 * std
--   (and, with a flat baseline of std 0, recent / 3 > mean, so that any real rise counts)
-- is_current marks warnings on the data's last day.
create or replace table mart.warnings as

with

tickets as (

    select * from core.ticket

),

health_periods as (

    select * from core.health_status_history

),

persons as (

    select * from core.person

),

grids as (

    select * from core.grid

),

events as (

    select 'grid' as scope_type, grid_code as scope_key, 'tickets' as signal, received_on as day_on
    from tickets where grid_code is not null
    union all
    select 'category', category, 'tickets', received_on
    from tickets where category is not null
    union all
    select 'grid', persons.grid_code, 'yellow_red_codes',
        cast(timezone('Asia/Shanghai', health_periods.valid_from) as date)
    from health_periods
    join persons on persons.person_id = health_periods.person_id
    where health_periods.color in ('yellow', 'red') and health_periods.period_no > 1
        and persons.grid_code is not null
    union all
    select 'community', persons.community_code, 'yellow_red_codes',
        cast(timezone('Asia/Shanghai', health_periods.valid_from) as date)
    from health_periods
    join persons on persons.person_id = health_periods.person_id
    where health_periods.color in ('yellow', 'red') and health_periods.period_no > 1
        and persons.community_code is not null

),

bounds as (

    select min(day_on) as first_on, max(day_on) as last_on
    from (
        select received_on as day_on from tickets
        union all
        select export_date from staging.stg_health_codes__exports
    )

),

days as (

    select cast(unnest(generate_series(first_on, last_on, interval 1 day)) as date) as day_on
    from bounds

),

scopes as (

    select distinct scope_type, scope_key, signal from events

),

daily as (

    select scopes.scope_type, scopes.scope_key, scopes.signal, days.day_on, count(events.day_on) as events
    from scopes
    cross join days
    left join events
        on events.scope_type = scopes.scope_type
        and events.scope_key = scopes.scope_key
        and events.signal = scopes.signal
        and events.day_on = days.day_on
    group by all

),

windows as (

    select
        *,
        sum(events) over recent_days as recent_count,
        avg(events) over baseline_days as baseline_mean,
        stddev_pop(events) over baseline_days as baseline_std,
        count(*) over baseline_days as baseline_days
    from daily
    window
        recent_days as (partition by scope_type, scope_key, signal order by day_on rows between 2 preceding and current row),
        baseline_days as (partition by scope_type, scope_key, signal order by day_on rows between 16 preceding and 3 preceding)

),

fired as (

    select *
    from windows
    where baseline_days = 14
        and recent_count >= 3
        and recent_count / 3 > baseline_mean + 2 * baseline_std
        and recent_count / 3 > baseline_mean

),

final as (

    select
        fired.scope_type,
        fired.scope_key,
        coalesce(grids.grid_name, fired.scope_key) as scope_name,
        fired.signal,
        fired.day_on,
        cast(fired.recent_count as bigint) as recent_count,
        fired.recent_count / 3 as recent_daily_mean,
        fired.baseline_mean,
        fired.baseline_std,
        fired.baseline_mean + 2 * fired.baseline_std as threshold,
        fired.day_on = bounds.last_on as is_current
    from fired
    cross join bounds
    -- the scope type inside the key: a one-sided join condition would make a nested-loop join
    left join grids
        on grids.grid_code = case when fired.scope_type in ('grid', 'community') then fired.scope_key end

)

select * from final order by day_on, scope_type, scope_key, signal
