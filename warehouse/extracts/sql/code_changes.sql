-- 健康码变化: residents of the given communities whose code turned yellow or red on the day (since yesterday).
-- grain: one row per person and change; parameters $communities (a list of codes), $day.
select
    changes.community_code,
    changes.name,
    changes.id_number,
    changes.phone,
    case changes.color when 'yellow' then '黄码' when 'red' then '红码' end as color_now,
    case changes.previous_color when 'green' then '绿码' when 'yellow' then '黄码'
         when 'red' then '红码' else '（首次）' end as color_before,
    changes.valid_from,
    changes.grid_name,
    case when changes.address_std is null then changes.address_as_written
         when changes.address_as_written is null then changes.address_std
         else changes.address_std || chr(10) || '（原：' || changes.address_as_written || '）'
    end as address
from community.health_change as changes
where changes.community_code in (select unnest($communities))
  and cast(timezone('Asia/Shanghai', changes.valid_from) as date) = $day
-- person_key only breaks ties (two namesakes changing at the same instant) so the order is stable
order by changes.community_code, changes.valid_from, changes.name, changes.person_key
