-- core.person: the golden record of each resolved person, by survivorship over their source records.
-- grain: one row per person; key person_id (from core.person_source); person_key is its pseudonym.
-- incremental key: person_id (a merge refreshes only the persons it touched; see warehouse/models)
-- Survivorship:
--   id_number   the valid ID held by most records; ties: most recently seen, then the smaller value
--   name        most frequent standardised name in the most trusted source that has one
--               (registry > health codes > hotline > city cases); ties: most recent, then value
--   phone       the most recently seen mobile (else the most recent phone of any kind)
--   birth_date, sex  from a valid ID's records when there is one, else most frequent among records
--   household, grid, residence type  the latest non-deleted registry resident record
--   person_key  HMAC-SHA256(secret, person_id); the secret and its pads come from warehouse.pseudonym
create or replace table core.person as

with

person_source as (

    select * from core.person_source

),

person_records as (

    select * from staging.stg_person_records

),

residents as (

    select * from staging.stg_grid_registry__residents

),

special_groups as (

    select * from staging.stg_grid_registry__special_groups

),

households as (

    select * from core.household

),

records as (

    select
        person_source.person_id,
        person_records.*,
        case person_records.source
            when 'grid_registry.residents' then 1
            when 'grid_registry.grid_workers' then 2
            when 'health_codes.exports' then 3
            when 'hotline.tickets' then 4
            when 'city_cases.cases' then 5
            else 9
        end as source_rank
    from person_source
    join person_records on person_records.record_uid = person_source.record_uid

),

id_votes as (

    select person_id, id_std, count(*) as records, max(seen_at) as last_seen_at
    from records
    where id_std is not null
    group by all

),

golden_id as (

    select person_id, id_std as id_number
    from id_votes
    qualify row_number() over (
        partition by person_id order by records desc, last_seen_at desc nulls last, id_std
    ) = 1

),

name_votes as (

    select person_id, name_std, min(source_rank) as source_rank, count(*) as records,
        max(seen_at) as last_seen_at
    from records
    where name_std is not null and name_std <> ''
    group by person_id, source_rank, name_std

),

golden_name as (

    select person_id, name_std as name
    from name_votes
    qualify row_number() over (
        partition by person_id
        order by source_rank, records desc, last_seen_at desc nulls last, name_std
    ) = 1

),

golden_phone as (

    select person_id, phone_std as phone, phone_kind
    from records
    where phone_std is not null
    qualify row_number() over (
        partition by person_id
        order by (phone_kind = 'mobile') desc, seen_at desc nulls last, source_rank, phone_std
    ) = 1

),

birth_votes as (

    -- records carrying the golden ID vote first: their birth date and sex come from the ID itself
    select
        records.person_id,
        records.birth_date,
        records.sex,
        max(coalesce(records.id_std = golden_id.id_number, false)) as from_golden_id,
        count(*) as records
    from records
    left join golden_id on golden_id.person_id = records.person_id
    where records.birth_date is not null or records.sex is not null
    group by records.person_id, records.birth_date, records.sex

),

golden_birth as (

    select person_id, birth_date, sex
    from birth_votes
    qualify row_number() over (
        partition by person_id
        order by from_golden_id desc, (birth_date is not null and sex is not null) desc,
            records desc, birth_date, sex
    ) = 1

),

registry_home as (

    select
        records.person_id,
        records.record_key as resident_id,
        records.household_id,
        residents.residence_type
    from records
    left join residents on residents.resident_id = records.record_key
    where records.source = 'grid_registry.residents' and not coalesce(records.is_deleted, false)
    qualify row_number() over (
        partition by records.person_id order by records.seen_at desc nulls last, records.record_key desc
    ) = 1

),

person_groups as (

    select
        records.person_id,
        list(distinct special_groups.group_type order by special_groups.group_type) as special_groups
    from records
    join special_groups on special_groups.resident_id = records.record_key
    where records.source = 'grid_registry.residents' and not coalesce(records.is_deleted, false)
    group by records.person_id

),

record_summary as (

    select
        person_id,
        list(distinct source order by source) as sources,
        count(*) as record_count,
        min(seen_at) as first_seen_at,
        max(seen_at) as last_seen_at,
        bool_or(source = 'grid_registry.grid_workers') as is_grid_worker
    from records
    group by person_id

),

final as (

    select
        record_summary.person_id,
        -- HMAC-SHA256(secret, person_id) (RFC 2104), the pads set by warehouse.pseudonym
        sha256(
            getvariable('onenet_hmac_opad')
            || unhex(sha256(getvariable('onenet_hmac_ipad') || encode(record_summary.person_id)))
        ) as person_key,
        golden_name.name,
        golden_id.id_number,
        golden_birth.birth_date,
        golden_birth.sex,
        golden_phone.phone,
        golden_phone.phone_kind,
        registry_home.resident_id,
        registry_home.household_id,
        households.grid_code,
        households.grid_name,
        households.community_code,
        households.community_name,
        households.street_name,
        registry_home.person_id is not null as is_resident,
        registry_home.residence_type,
        record_summary.is_grid_worker,
        coalesce(person_groups.special_groups, []::varchar[]) as special_groups,
        person_groups.person_id is not null as is_special_group,
        record_summary.sources,
        record_summary.record_count,
        record_summary.first_seen_at,
        record_summary.last_seen_at
    from record_summary
    left join golden_name on golden_name.person_id = record_summary.person_id
    left join golden_id on golden_id.person_id = record_summary.person_id
    left join golden_birth on golden_birth.person_id = record_summary.person_id
    left join golden_phone on golden_phone.person_id = record_summary.person_id
    left join registry_home on registry_home.person_id = record_summary.person_id
    left join households on households.household_id = registry_home.household_id
    left join person_groups on person_groups.person_id = record_summary.person_id

)

select * from final order by person_id
