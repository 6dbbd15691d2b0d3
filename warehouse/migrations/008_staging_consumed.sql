-- The validation runs whose rows staging has been built from: the rows of any other run are the
-- delta the next merge refreshes staging for (warehouse/standardise/incremental.py).
create table if not exists meta.staging_consumed (
    validation_run_id varchar primary key,
    built_at          timestamptz not null
);
