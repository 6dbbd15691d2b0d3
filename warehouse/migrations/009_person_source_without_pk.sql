-- core.person_source without its PRIMARY KEY: maintaining the ART index cost more than the whole
-- resolution at district scale (replacing 3.65M rows: delete 84 s + insert 32 s + commit 106 s with
-- the key, 9 s without, measured on one machine under load). record_uid stays unique by
-- construction: the resolver replaces exactly the rows it resolved (warehouse/resolve/stable_ids.py
-- checks that before writing, and tests/warehouse/test_resolve.py after every kind of run).
create table core.person_source_rebuilt as select * from core.person_source;
drop table core.person_source;
alter table core.person_source_rebuilt rename to person_source;
