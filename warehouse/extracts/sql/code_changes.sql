-- 健康码变化: residents of the given communities whose code turned yellow or red on the day (since yesterday).
-- grain: one row per person and change; parameters $communities (a list of names), $day.
with periods as (
    select
        history.*,
        lag(history.color) over (partition by history.person_id order by history.period_no) as previous_color
    from core.health_status_history as history
),
final as (
    select
        person.community_name,
        person.name,
        person.id_number,
        person.phone,
        case periods.color when 'yellow' then '黄码' when 'red' then '红码' end as color_now,
        case periods.previous_color when 'green' then '绿码' when 'yellow' then '黄码'
             when 'red' then '红码' else '（首次）' end as color_before,
        periods.valid_from,
        person.grid_name,
        household.address,
        person.person_id
    from periods
    join core.person as person using (person_id)
    left join core.household as household using (household_id)
    where person.community_name in (select unnest($communities))
      and periods.color in ('yellow', 'red')
      and periods.previous_color is distinct from periods.color
      and cast(timezone('Asia/Shanghai', periods.valid_from) as date) = $day
)
-- person_id only breaks ties (two namesakes changing at the same instant) so the order is stable
select * exclude (person_id) from final order by community_name, valid_from, name, person_id
