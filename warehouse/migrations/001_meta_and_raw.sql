-- The bookkeeping every load writes, and the raw layer connectors land into.
create schema if not exists meta;
create schema if not exists raw;

-- One row per load attempt: what came in, what landed, where the watermark moved.
create table if not exists meta.loads (
    load_id             varchar primary key,
    source              varchar not null,
    entity              varchar not null,
    started_at          timestamptz not null,
    finished_at         timestamptz,
    status              varchar not null,        -- running / succeeded / failed
    rows_in             bigint default 0,
    rows_landed         bigint default 0,
    duplicates_skipped  bigint default 0,
    rows_quarantined    bigint default 0,
    watermark_before    varchar,
    watermark_after     varchar,
    full_refresh        boolean default false,
    message             varchar                  -- the failure, or notes (skipped files, new columns)
);

-- The saved position of each source entity; moves only in the transaction that lands its rows.
create table if not exists meta.source_state (
    source      varchar not null,
    entity      varchar not null,
    state       varchar not null,                -- JSON
    load_id     varchar not null,
    updated_at  timestamptz not null,
    primary key (source, entity)
);

-- Records held back, with the position they came from and every reason.
create table if not exists meta.quarantine (
    load_id         varchar not null,
    source          varchar not null,
    entity          varchar not null,
    stage           varchar not null,            -- extract / validate
    position        varchar not null,            -- file + line, page, primary key
    raw_record      varchar,                     -- the record as delivered
    reasons         varchar not null,            -- JSON list of {rule, severity, message}
    quarantined_at  timestamptz not null
);

-- Columns a source started or stopped sending.
create table if not exists meta.schema_changes (
    load_id      varchar not null,
    source       varchar not null,
    entity       varchar not null,
    column_name  varchar not null,
    change       varchar not null,               -- added
    data_type    varchar,
    detected_at  timestamptz not null
);
