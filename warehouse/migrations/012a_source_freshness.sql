-- Honest freshness (issue #14, item 4): how recent each source's data really is, from its newest
-- real data row, never from a file's name or the largest watermark any load ever wrote.

-- One row per load that landed rows: the newest real data instant among them (what counts as a
-- real data row, per source: connectors/common/freshness.py). A row dated later than the moment it
-- was extracted plus a small tolerance is not counted: a clock in the future is no evidence of data.
create table if not exists meta.load_data_times (
    load_id      varchar primary key,
    source       varchar not null,
    entity       varchar not null,
    data_until   timestamptz,              -- null: no landed row carried a usable instant
    rows_dated   bigint not null,          -- landed rows with an instant no later than extraction + tolerance
    rows_future  bigint not null           -- landed rows dated beyond it (not counted)
);

-- A file set aside whole (undecodable, unparsable, dated in the future): the rest of the drop lands.
-- `released_at` / `released_by` are set when a later load read the file (fixed, or retried).
create table if not exists meta.quarantined_files (
    source          varchar not null,
    entity          varchar not null,
    file_name       varchar not null,
    content_sha256  varchar not null,
    size            bigint,
    mtime_ns        bigint,
    reason          varchar not null,      -- what is wrong and what to do
    line            bigint,                -- 1-based physical line of the problem, when known
    byte_offset     bigint,                -- 0-based byte offset in the file, when known
    load_id         varchar not null,      -- the load that set it aside
    quarantined_at  timestamptz not null,
    released_at     timestamptz,
    released_by     varchar
);

-- grain: one row per source (the four silos, plus any other source that has loads).
-- synced_at: the last successful sync's finish; data_until: the newest real data instant landed
-- (UTC); data_until_day: its Beijing date; last_status / last_message: the latest attempt of each
-- entity, rolled up ('failed' if any entity's latest attempt failed, with that failure's message).
create or replace view meta.source_freshness as
with known as (
    select unnest(['hotline', 'city_cases', 'grid_registry', 'health_codes']) as source
    union
    select distinct source from meta.loads
),
synced as (
    select source, max(finished_at) as synced_at
    from meta.loads where status = 'succeeded' group by source
),
data as (
    select t.source, max(t.data_until) as data_until, sum(t.rows_future) as rows_future
    from meta.load_data_times t
    join meta.loads l using (load_id)
    where l.status = 'succeeded'
    group by t.source
),
latest_per_entity as (
    select source, entity, arg_max(status, started_at) as status, arg_max(message, started_at) as message,
           max(started_at) as attempted_at
    from meta.loads group by source, entity
),
latest as (
    select source,
           case when bool_or(status = 'failed') then 'failed' else arg_max(status, attempted_at) end as last_status,
           coalesce(arg_max(message, attempted_at) filter (where status = 'failed'),
                    arg_max(message, attempted_at)) as last_message,
           max(attempted_at) as last_attempt_at
    from latest_per_entity group by source
),
files as (
    select source, count(*) as files_quarantined
    from meta.quarantined_files where released_at is null group by source
),
final as (
    select
        known.source,
        synced.synced_at,
        data.data_until,
        cast(timezone('Asia/Shanghai', data.data_until) as date) as data_until_day,
        latest.last_status,
        latest.last_message,
        latest.last_attempt_at,
        coalesce(files.files_quarantined, 0) as files_quarantined,
        coalesce(data.rows_future, 0) as rows_dated_in_future
    from known
    left join synced using (source)
    left join data using (source)
    left join latest using (source)
    left join files using (source)
)
select * from final
order by source;
