-- 城管案件: city-management cases of the given communities still open at the end of the day.
-- grain: one row per case; parameters $communities (a list of codes), $day. Reads the community
-- audience's relations (warehouse/publish/community), never the warehouse.
with day_end as (
    select (($day + interval 1 day)::timestamp at time zone 'Asia/Shanghai') as at
),
final as (
    select
        cases.community_code,
        cases.case_id,
        cases.reported_at,
        cases.category_type,
        cases.category_name,
        cases.description,
        case when cases.address_std is null then cases.address_as_written
             when cases.address_as_written is null then cases.address_std
             else cases.address_std || chr(10) || '（原：' || cases.address_as_written || '）'
        end as address,
        cases.reporter_type,
        cases.source_ticket_id,
        cases.status_name,
        cases.deadline,
        case when cases.deadline < day_end.at then '已超期' else '' end as overdue
    from community.city_case as cases, day_end
    where cases.community_code in (select unnest($communities))
      and cases.reported_at < day_end.at
      and (cases.closed_at is null or cases.closed_at >= day_end.at)
)
select * from final order by community_code, reported_at, case_id
