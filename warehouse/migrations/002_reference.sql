-- Reference data the checks and the staging layer look codes up in, and where each list came from.
create schema if not exists ref;

-- GB/T 2260 administrative division codes, current and historical (province, city and county level).
-- A resident ID keeps its code for life, so retired codes stay here with the years they were in use.
create table if not exists ref.division_codes (
    code        varchar primary key,             -- 6 digits, e.g. 420102
    name        varchar,                         -- the latest name under this code
    first_year  integer,                         -- first year in use (null: before the list begins)
    last_year   integer                          -- last year in use (null: still in use)
);

-- One row per reference list: its origin and version, for the manifest and for re-loads.
create table if not exists ref.sources (
    name        varchar primary key,             -- the table, e.g. division_codes
    source      varchar,
    version     varchar,
    loaded_at   timestamptz
);
