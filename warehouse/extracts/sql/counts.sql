-- 今日概况 figures per community: residents, special-group residents, hotline tickets still open.
-- grain: one row per given community (zeros when it has none); parameters $communities, $day.
with wanted as (
    select unnest($communities) as community_name
),
day_end as (
    select (($day + interval 1 day)::timestamp at time zone 'Asia/Shanghai') as at
),
persons as (
    select
        community_name,
        count(*) filter (where is_resident) as residents,
        count(*) filter (where is_resident and is_special_group) as special
    from core.person
    where community_name in (select community_name from wanted)
    group by community_name
),
open_tickets as (
    -- received by the day and not closed by its end, today's new tickets included
    select tickets.community_name, count(*) as still_open
    from core.ticket as tickets, day_end
    where tickets.community_name in (select community_name from wanted)
      and tickets.received_on <= $day
      and (tickets.closed_at is null or tickets.closed_at >= day_end.at)
    group by tickets.community_name
)
select
    wanted.community_name,
    coalesce(persons.residents, 0) as residents,
    coalesce(persons.special, 0) as special,
    coalesce(open_tickets.still_open, 0) as still_open
from wanted
left join persons using (community_name)
left join open_tickets using (community_name)
