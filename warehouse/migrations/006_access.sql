-- Who read or exported personal data: one row per extract, report, query or dashboard build.
create table if not exists meta.access_log (
    access_id     varchar primary key,
    accessed_at   timestamptz not null,
    user_name     varchar not null,
    role          varchar not null,     -- data_engineer | district_analyst | community_staff
    community     varchar,              -- the community a community_staff user is bound to
    action        varchar not null,     -- extract | report | query | dashboard | export
    target        varchar not null,     -- what was read: a file, a template, the SQL text
    row_count     bigint not null,
    full_values   boolean not null      -- true when unmasked IDs / phones were handed out
);
