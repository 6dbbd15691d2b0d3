-- 数据更新情况: per source, how recent its data is (its newest real data row) and whether its last
-- sync failed. grain: one row per source; parameter $day. A source is stale when its newest data is
-- older than the day itself (nothing of the day arrived), so staff know which figures may lag.
select
    source,
    synced_at,
    data_until_day,
    -- the registry changes rarely: its newest change may be days old and still complete
    source <> 'grid_registry' and (data_until_day is null or data_until_day < $day) as is_stale,
    coalesce(last_status = 'failed', false) as last_sync_failed,
    last_message
from community.freshness
order by source
