-- 数据更新情况: per source, how recent its data is and whether its last sync failed.
-- grain: one row per source; parameter $day. A source is stale when its newest data is older than
-- the day itself (nothing of the day arrived), so staff know which figures may lag.
with loads as (
    select * from meta.loads
),
latest_success as (
    select source, max(finished_at) as synced_at,
           max(try_cast(watermark_after as timestamptz)) as data_until,
           max(try_cast(watermark_after as date)) as data_until_day
    from loads where status = 'succeeded' group by source
),
latest_any as (
    select source, arg_max(status, started_at) as last_status, arg_max(message, started_at) as last_message,
           max(started_at) as last_attempt_at
    from loads group by source
),
sources as (
    select unnest(['hotline', 'city_cases', 'grid_registry', 'health_codes']) as source
),
final as (
    select
        sources.source,
        latest_success.synced_at,
        coalesce(cast(timezone('Asia/Shanghai', latest_success.data_until) as date),
                 latest_success.data_until_day) as data_until_day,
        latest_any.last_status,
        latest_any.last_message
    from sources
    left join latest_success using (source)
    left join latest_any using (source)
)
select
    source,
    synced_at,
    data_until_day,
    -- the registry changes rarely: its newest change may be days old and still complete
    source <> 'grid_registry' and (data_until_day is null or data_until_day < $day) as is_stale,
    coalesce(last_status = 'failed', false) as last_sync_failed,
    last_message
from final
order by source
