-- core.incident_category_map (seed): which city-management case categories a hotline category
-- can be the same incident as. Used by incident linking (core.incident_member) for a ticket and a
-- case without a transfer reference. Edit the values to widen or narrow linking.
-- grain: one row per (hotline category, city case category_name); key both.
create or replace table core.incident_category_map as

with

pairs(hotline_category, case_category_name, note) as (

    values
        ('环境卫生', '暴露垃圾', '垃圾堆放'),
        ('环境卫生', '道路不洁', '道路脏乱'),
        ('环境卫生', '垃圾箱', '垃圾箱破损/满溢'),
        ('市政设施', '上水井盖', '井盖破损'),
        ('市政设施', '污水井盖', '井盖破损/缺失'),
        ('市政设施', '路灯', '路灯不亮'),
        ('市政设施', '道路护栏', '护栏倒伏'),
        ('交通出行', '机动车乱停放', '乱停放堵塞通道'),
        ('交通出行', '占道经营', '路口占道经营'),
        ('供水供电', '自来水管破裂', '水管破裂停水')

),

final as (

    select * from pairs

)

select * from final order by hotline_category, case_category_name
