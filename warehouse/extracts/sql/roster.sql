-- 重点人群: special-group residents of the given communities with their latest contact across the silos.
-- grain: one row per person; parameters $communities (codes), $day (unused: the roster is the current one).
select
    roster.community_code,
    roster.name,
    roster.group_types_text,
    roster.id_number,
    roster.phone,
    case roster.latest_contact_source
        when 'grid_registry.residents' then '网格登记'
        when 'grid_registry.grid_workers' then '网格员登记'
        when 'health_codes.exports' then '健康码'
        when 'hotline.tickets' then '12345热线'
        when 'city_cases.cases' then '数字城管'
        else roster.latest_contact_source
    end as latest_contact_source,
    roster.latest_contact_at,
    roster.grid_name,
    case when roster.address_std is null then roster.address_as_written
         when roster.address_as_written is null then roster.address_std
         else roster.address_std || chr(10) || '（原：' || roster.address_as_written || '）'
    end as address,
    case roster.code_color when 'green' then '绿码' when 'yellow' then '黄码' when 'red' then '红码' end as code_color
from community.special_group_roster as roster
where roster.community_code in (select unnest($communities)) and $day is not null
-- person_key only breaks ties between namesakes of one grid, so the order is stable
order by roster.community_code, roster.grid_code, roster.name, roster.person_key
