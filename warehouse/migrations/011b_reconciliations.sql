-- Reconciliation runs (issue #14): the source's complete current state (keys and hashes)
-- compared with raw's current state; the difference is landed as one load of kind 'reconcile'.
create table if not exists meta.reconciliations (
    reconciliation_id  varchar primary key,
    source             varchar not null,
    entity             varchar not null,
    load_id            varchar,                 -- the load that landed the difference
    started_at         timestamptz not null,
    finished_at        timestamptz,
    status             varchar not null,        -- running / succeeded / failed
    source_keys        bigint,                  -- keys the source holds now
    raw_keys           bigint,                  -- keys raw held as current (tombstones excluded)
    missed_update      bigint default 0,        -- changed in the source, clock moved, not in raw yet
    back_dated         bigint default 0,        -- changed or inserted with updated_at behind the cursor
    silent_change      bigint default 0,        -- content changed, updated_at did not move
    revert             bigint default 0,        -- content back to an earlier, non-current version
    hard_delete        bigint default 0,        -- key gone from the source: tombstone landed
    phantom            bigint default 0,        -- key in raw the source never had: tombstone landed
    watermark          varchar,                 -- the cursor's watermark when the run started
    overlap_seconds    double,                  -- the cursor's overlap window
    message            varchar
);

-- One row per key found different, by kind; what the silo's owner is told about (late rows).
create table if not exists meta.reconciliation_keys (
    reconciliation_id       varchar not null,
    source                  varchar not null,
    entity                  varchar not null,
    record_key              varchar not null,   -- the key's values joined by ','
    kind                    varchar not null,
    source_updated_at       timestamptz,        -- the source's updated_at of its current version
    raw_updated_at          timestamptz,        -- updated_at of raw's current version before the run
    watermark               timestamptz,        -- the cursor's watermark
    seconds_behind_watermark double,            -- how far behind the watermark the row arrived
    found_at                timestamptz not null
);
