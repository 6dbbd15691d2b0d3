-- community community.freshness: how recent each source's data is (from its newest real data row)
-- and whether its last sync failed; the same for every community. grain: one row per source.
select source, synced_at, data_until, data_until_day, last_status, last_message
from meta.source_freshness
