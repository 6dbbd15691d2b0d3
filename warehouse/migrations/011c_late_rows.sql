-- How late the rows a load landed arrived (issue #14): rows whose source clock (updated_at) was at
-- or behind the watermark the load started from, i.e. caught by the overlap window or the
-- inclusive cursor rather than read in order, and how far behind the latest of them was.
alter table meta.loads add column if not exists late_rows bigint;
alter table meta.loads add column if not exists max_seconds_behind_watermark double;
