-- Versions of a source row are ordered by the load that landed them, not by clocks: every load
-- gets a monotonically increasing load_seq (issue #14). "The current version of a key" is its
-- row in the load with the greatest load_seq; staging's latest follows it, and landing skips a
-- row only when it equals that current version (so an A -> B -> A revert lands again).
-- kind: 'sync' (incremental or full refresh) or 'reconcile' (a reconciliation's difference).
alter table meta.loads add column if not exists load_seq bigint;
alter table meta.loads add column if not exists kind varchar default 'sync';

update meta.loads set load_seq = numbered.seq
from (
    select load_id, row_number() over (order by started_at, load_id) as seq from meta.loads
) as numbered
where numbered.load_id = meta.loads.load_id;

update meta.loads set kind = 'sync' where kind is null;
