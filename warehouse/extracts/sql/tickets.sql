-- 热线工单: hotline tickets of the given communities that are new on the day or still open at its end.
-- grain: one row per ticket; parameters $communities (a list of codes), $day (a Beijing date).
with day_end as (
    select (($day + interval 1 day)::timestamp at time zone 'Asia/Shanghai') as at
),
tickets as (
    select * from community.ticket where community_code in (select unnest($communities))
),
final as (
    select
        tickets.community_code,
        tickets.ticket_id,
        case when tickets.received_on = $day then '新增' else '未办结' end as kind,
        tickets.received_at,
        -- the urgency only where it is not the usual one, to keep the printed sheet one page wide
        tickets.category || case when tickets.urgency is null or tickets.urgency = '一般' then ''
                                 else '（' || tickets.urgency || '）' end as category,
        tickets.content,
        -- the standardised address; as written below it where it differs (to verify on a visit)
        case when tickets.address_std is null then tickets.address_as_written
             when tickets.address_as_written is null then tickets.address_std
             else tickets.address_std || chr(10) || '（原：' || tickets.address_as_written || '）'
        end as address,
        tickets.caller_name,
        tickets.caller_phone,
        tickets.department,
        tickets.status_name,
        tickets.response_deadline,
        tickets.resolve_deadline,
        case
            when tickets.resolve_deadline < day_end.at and (tickets.resolved_at is null or tickets.resolved_at > day_end.at)
                then '已超期'
            when tickets.response_deadline < day_end.at
                 and (tickets.first_response_at is null or tickets.first_response_at > day_end.at) then '响应超时'
            else ''
        end as overdue
    from tickets, day_end
    where tickets.received_at < day_end.at
      and (tickets.received_on = $day or tickets.closed_at is null or tickets.closed_at >= day_end.at)
)
select * from final order by community_code, kind desc, received_at, ticket_id
