-- Validation bookkeeping, the batches being validated, and the staging layer rows pass into.
create schema if not exists validation;
create schema if not exists staging;

-- One row per validation of one source entity: what was checked, what passed, what was held back.
create table if not exists meta.validation_runs (
    run_id            varchar primary key,
    source            varchar not null,
    entity            varchar not null,
    started_at        timestamptz not null,
    finished_at       timestamptz,
    status            varchar not null,      -- passed / quarantined / blocked / failed
    rows_in           bigint default 0,
    rows_passed       bigint default 0,
    rows_quarantined  bigint default 0,
    rows_warned       bigint default 0,
    load_ids          varchar,               -- JSON list of the loads validated
    message           varchar,               -- why a run was blocked, warnings in short
    results           varchar,               -- JSON: every expectation with severity, success, counts
    docs_url          varchar
);

-- Which loads have gone through validation (a blocked run leaves its loads pending).
create table if not exists meta.validated_loads (
    load_id  varchar primary key,
    run_id   varchar not null
);
