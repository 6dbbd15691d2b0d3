-- core.city_case: digital city-management cases in their latest state, placed in a grid.
-- grain: one row per case; key case_id.
-- The grid comes from the address (compound + building -> micro-grid, see core.address); the
-- community from the address, else the case's own community name matched to a registry community.
create or replace table core.city_case as

with

cases as (

    select * from staging.stg_city_cases__cases

),

addresses as (

    select * from core.address

),

communities as (

    select * from core.grid where grid_level = 'community'

),

person_source as (

    select * from core.person_source where source = 'city_cases.cases'

),

final as (

    select
        cases.case_id,
        cases.source_ticket_id,
        cases.category_type,
        cases.category_code,
        cases.category_name,
        cases.description,
        cases.address,
        cases.address_key,
        cases.address_compound,
        cases.address_building,
        cases.lon,
        cases.lat,
        addresses.grid_code,
        addresses.grid_name,
        coalesce(addresses.community_code, communities.grid_code) as community_code,
        coalesce(addresses.community_name, communities.grid_name) as community_name,
        cases.street,
        cases.community as reported_community,
        cases.reporter_type,
        person_source.person_id as reporter_person_id,
        cases.reporter_name_std as reporter_name,
        cases.reporter_phone_std as reporter_phone,
        cases.status,
        cases.status_name,
        cases.reported_at,
        cases.registered_at,
        cases.dispatched_at,
        cases.disposed_at,
        cases.verified_at,
        cases.closed_at,
        cases.deadline,
        cases.updated_at,
        cast(timezone('Asia/Shanghai', cases.reported_at) as date) as reported_on,
        cast(timezone('Asia/Shanghai', cases.closed_at) as date) as closed_on,
        cases.closed_at is null as is_open,
        coalesce(cases.disposed_at <= cases.deadline, false) as is_disposed_in_time,
        cases.source_ticket_id is not null as is_transferred
    from cases
    left join addresses on addresses.address_key = cases.address_key
    left join communities
        on communities.grid_name = cases.community and communities.street_name = cases.street
    left join person_source on person_source.record_key = cases.case_id

)

select * from final order by case_id
