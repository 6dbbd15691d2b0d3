-- The fingerprint of each model layer's SQL at its last build. An incremental refresh is only
-- right when the SQL is the one that built the rows it keeps: a new version rebuilds the layer.
create table if not exists meta.model_versions (
    layer        varchar primary key,   -- 'staging', 'core', 'marts'
    fingerprint  varchar not null,      -- sha256 of the layer's SQL files, in order
    built_at     timestamptz not null
);
