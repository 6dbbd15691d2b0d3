-- 今日概况 figures per community: residents, special-group residents, hotline tickets still open.
-- grain: one row per given community (zeros when it has none); parameters $communities (codes), $day.
with wanted as (
    select unnest($communities) as community_code
),
day_end as (
    select (($day + interval 1 day)::timestamp at time zone 'Asia/Shanghai') as at
),
open_tickets as (
    -- received by the day and not closed by its end, today's new tickets included
    select tickets.community_code, count(*) as still_open
    from community.ticket as tickets, day_end
    where tickets.community_code in (select community_code from wanted)
      and tickets.received_on <= $day
      and (tickets.closed_at is null or tickets.closed_at >= day_end.at)
    group by tickets.community_code
)
select
    wanted.community_code,
    coalesce(persons.residents, 0) as residents,
    coalesce(persons.special, 0) as special,
    coalesce(open_tickets.still_open, 0) as still_open
from wanted
left join community.resident_count as persons using (community_code)
left join open_tickets using (community_code)
