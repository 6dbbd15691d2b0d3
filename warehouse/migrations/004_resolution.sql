-- Person resolution: every source record mapped to a stable person_id, and the bookkeeping of runs and id changes.
create schema if not exists core;

-- Grain: one row per source record. person_id is stable across runs (see warehouse/resolve/stable_ids.sql).
create table if not exists core.person_source (
    record_uid         varchar primary key,   -- source || ':' || record_key
    source             varchar not null,
    record_key         varchar not null,
    person_id          varchar not null,      -- 'P' + 9 digits
    link_rule          varchar not null,      -- why the record is in this person: 'same valid ID', 'score 14.2: ...', 'singleton'
    match_weight       double,                -- log2 Bayes factor of the link (NULL for anchors, identical records and singletons)
    match_probability  double,
    linked_record_uid  varchar,               -- the record it was linked through; NULL for anchors and singletons
    run_id             varchar not null,      -- the run that last changed this row
    resolved_at        timestamptz not null
);

-- One row per resolver run: sizes, estimated parameters, time.
create table if not exists meta.resolution_runs (
    run_id        varchar primary key,
    entity        varchar not null,           -- the configuration's name ('person')
    started_at    timestamptz not null,
    finished_at   timestamptz,
    records       bigint,
    profiles      bigint,
    pairs_scored  bigint,
    links         bigint,
    clusters      bigint,
    parameters    varchar,                    -- JSON: lambda, m and u per comparison level, threshold
    seconds       double
);

-- Merges, splits and new ids per run, so a consumer can follow a person_id that changed.
create table if not exists meta.person_id_changes (
    run_id            varchar not null,
    entity            varchar not null,
    change            varchar not null,       -- merge / split / new
    person_id         varchar not null,       -- the id that survives (merge), the new id (split, new)
    other_person_id   varchar,                -- the absorbed id (merge), the id split from (split)
    records_affected  bigint not null,
    "at"              timestamptz not null  -- quoted: AT is a keyword
);

-- The last id issued per entity: ids are never reused, even after a person disappears.
create table if not exists meta.id_counters (
    entity      varchar primary key,
    last_value  bigint not null
);
