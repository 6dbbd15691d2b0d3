-- core.ticket_history: the life of each hotline ticket, one row per status it reached.
-- grain: one row per ticket per status (received, dispatched, responded, resolved, closed, rated);
-- key (ticket_id, status).
-- Built from every validated version in staging.hotline_tickets (append-only, instants as text):
-- status_at is the stage's time as the latest version states it; first_seen_at is when a sync
-- first saw that stage filled in, and version_status the status the ticket showed then.
create or replace table core.ticket_history as

with

versions as (

    select
        ticket_id,
        status as version_status,
        try_cast(updated_at as timestamptz) as version_updated_at,
        _extracted_at as extracted_at,
        try_cast(received_at as timestamptz) as received_at,
        try_cast(dispatched_at as timestamptz) as dispatched_at,
        try_cast(first_response_at as timestamptz) as responded_at,
        try_cast(resolved_at as timestamptz) as resolved_at,
        try_cast(closed_at as timestamptz) as closed_at,
        try_cast(rated_at as timestamptz) as rated_at
    from staging.hotline_tickets

),

stages as (

    unpivot versions
    on received_at, dispatched_at, responded_at, resolved_at, closed_at, rated_at
    into name stage value status_at

),

ranked as (

    select
        ticket_id,
        replace(stage, '_at', '') as status,
        status_at,
        version_status,
        version_updated_at,
        extracted_at,
        row_number() over (
            partition by ticket_id, stage
            order by version_updated_at desc nulls last, extracted_at desc, status_at desc
        ) as latest_rank,
        min(extracted_at) over (partition by ticket_id, stage) as first_seen_at,
        count(distinct status_at) over (partition by ticket_id, stage) as stated_times
    from stages

),

first_versions as (

    select ticket_id, status, version_status as first_seen_status
    from ranked
    qualify row_number() over (
        partition by ticket_id, status order by extracted_at, version_updated_at nulls last
    ) = 1

),

final as (

    select
        ranked.ticket_id,
        ranked.status,
        case ranked.status
            when 'received' then 1 when 'dispatched' then 2 when 'responded' then 3
            when 'resolved' then 4 when 'closed' then 5 when 'rated' then 6
        end as status_order,
        ranked.status_at,
        cast(timezone('Asia/Shanghai', ranked.status_at) as date) as status_on,
        ranked.first_seen_at,
        first_versions.first_seen_status as version_status,
        ranked.stated_times > 1 as is_restated
    from ranked
    join first_versions
        on first_versions.ticket_id = ranked.ticket_id and first_versions.status = ranked.status
    where ranked.latest_rank = 1

)

select * from final order by ticket_id, status_order
