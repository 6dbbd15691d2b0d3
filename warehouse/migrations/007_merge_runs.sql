-- One row per `onenet merge`: what went in, what came out, how long each step took.
create table if not exists meta.merge_runs (
    run_id          varchar primary key,
    started_at      timestamptz not null,
    finished_at     timestamptz,
    status          varchar not null,   -- succeeded | failed
    records_in      bigint,             -- person-like source records
    persons         bigint,             -- golden persons
    links           bigint,             -- source records joined to another record's person
    incidents       bigint,
    warnings        bigint,
    step_seconds    varchar,            -- JSON: step -> seconds
    table_rows      varchar,            -- JSON: table -> rows
    message         varchar
);
