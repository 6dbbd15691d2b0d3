-- 健康码变化: residents of one community whose code turned yellow or red on the day (since yesterday).
-- grain: one row per person and change; parameters $community, $day.
with periods as (
    select
        history.*,
        lag(history.color) over (partition by history.person_id order by history.period_no) as previous_color
    from core.health_status_history as history
),
final as (
    select
        person.name,
        person.id_number,
        person.phone,
        case periods.color when 'yellow' then '黄码' when 'red' then '红码' end as color_now,
        case periods.previous_color when 'green' then '绿码' when 'yellow' then '黄码'
             when 'red' then '红码' else '（首次）' end as color_before,
        periods.valid_from,
        person.grid_name,
        household.address
    from periods
    join core.person as person using (person_id)
    left join core.household as household using (household_id)
    where person.community_name = $community
      and periods.color in ('yellow', 'red')
      and periods.previous_color is distinct from periods.color
      and cast(timezone('Asia/Shanghai', periods.valid_from) as date) = $day
)
select * from final order by valid_from, name
