-- core.incident_member: which incident each hotline ticket and city case belongs to, and why.
-- grain: one row per ticket or case; key (source, member_key).
-- Linking: each record is attached to at most one earlier-known record (its parent); an incident is
-- a connected group of records. Rules, strongest first:
--   transfer_reference   a case whose source_ticket_id names a ticket (12345转办) -> that ticket
--   same_place_category  a case without reference -> the ticket at the same compound + building,
--                        category compatible by core.incident_category_map, the case reported from
--                        12 h before to 24 h after the ticket was received (nearest in time)
--   repeat_ticket        a ticket -> the earliest earlier ticket at the same compound + building, of
--                        the same category, received at most 48 h before it. A ticket that a case
--                        was transferred from opened its own incident and is never a repeat.
-- Parents (not all pairs) are linked so that one ticket cannot chain two incidents together.
-- incident_id = 'I-' || the key of the incident's earliest record (received/reported first, ties by
-- key): re-runs give the same ids and an incident keeps its id as later records join it.
-- link_rule: the rule that attached the record to its parent (linked_member_key); the earliest
-- record is the 'anchor' ('single' when alone); 'linked_from' a record only others attach to.
create or replace table core.incident_member as

with

tickets as (

    select * from core.ticket

),

cases as (

    select * from core.city_case

),

category_map as (

    select * from core.incident_category_map

),

members as (

    select
        'hotline.tickets:' || ticket_id as member_uid,
        'hotline.tickets' as source,
        'ticket' as member_type,
        ticket_id as member_key,
        received_at as member_at,
        category,
        case when address_compound is not null and address_building is not null
            then address_compound || '|' || address_building end as place_key,
        cast(null as varchar) as source_ticket_id
    from tickets
    union all
    select
        'city_cases.cases:' || case_id,
        'city_cases.cases',
        'case',
        case_id,
        reported_at,
        category_name,
        case when address_compound is not null and address_building is not null
            then address_compound || '|' || address_building end,
        source_ticket_id
    from cases

),

ticket_members as (

    select * from members where member_type = 'ticket'

),

case_members as (

    select * from members where member_type = 'case'

),

transferred_tickets as (

    -- a ticket a case was transferred from opened its own incident: it never joins an earlier one
    select distinct source_ticket_id as ticket_id from case_members where source_ticket_id is not null

),

transfer_parents as (

    select
        case_members.member_uid,
        ticket_members.member_uid as parent_uid,
        'transfer_reference' as link_rule,
        1 as rule_rank
    from case_members
    join ticket_members on ticket_members.member_key = case_members.source_ticket_id

),

place_parents as (

    -- a case without a usable reference: the ticket nearest in time at its place, compatible category
    select
        case_members.member_uid,
        ticket_members.member_uid as parent_uid,
        'same_place_category' as link_rule,
        2 as rule_rank
    from case_members
    join ticket_members on ticket_members.place_key = case_members.place_key
    join category_map
        on category_map.hotline_category = ticket_members.category
        and category_map.case_category_name = case_members.category
    where case_members.member_uid not in (select member_uid from transfer_parents)
        and case_members.member_at >= ticket_members.member_at - interval 12 hour
        and case_members.member_at <= ticket_members.member_at + interval 24 hour
    qualify row_number() over (
        partition by case_members.member_uid
        order by abs(epoch(case_members.member_at) - epoch(ticket_members.member_at)),
            ticket_members.member_key
    ) = 1

),

repeat_parents as (

    -- a repeated ticket: the earliest earlier ticket at its place and of its category within 48 h
    select
        later.member_uid,
        earlier.member_uid as parent_uid,
        'repeat_ticket' as link_rule,
        3 as rule_rank
    from ticket_members as later
    join ticket_members as earlier
        on earlier.place_key = later.place_key
        and earlier.category = later.category
        and (earlier.member_at, earlier.member_key) < (later.member_at, later.member_key)
    where later.member_at <= earlier.member_at + interval 48 hour
        and later.member_key not in (select ticket_id from transferred_tickets)
    qualify row_number() over (
        partition by later.member_uid order by earlier.member_at, earlier.member_key
    ) = 1

),

parents as (

    select * from transfer_parents
    union all
    select * from place_parents
    union all
    select * from repeat_parents

),

both_ways as (

    select member_uid, parent_uid as other_uid from parents
    union all
    select parent_uid, member_uid from parents

),

components as (

    -- connected components: every record reaches the labels of all records linked to it
    with recursive reach(member_uid, label) as (
        select member_uid, member_uid from members
        union
        select both_ways.other_uid, reach.label
        from reach
        join both_ways on both_ways.member_uid = reach.member_uid
    )
    select member_uid, min(label) as component
    from reach
    group by member_uid

),

anchored as (

    select
        members.*,
        components.component,
        first_value(members.member_key) over (
            partition by components.component order by members.member_at, members.member_key, members.member_uid
        ) as anchor_key,
        first_value(members.member_uid) over (
            partition by components.component order by members.member_at, members.member_key, members.member_uid
        ) as anchor_uid,
        count(*) over (partition by components.component) as component_size
    from members
    join components on components.member_uid = members.member_uid

),

final as (

    select
        'I-' || anchored.anchor_key as incident_id,
        anchored.source,
        anchored.member_type,
        anchored.member_key,
        anchored.member_at,
        anchored.category,
        anchored.place_key,
        anchored.member_uid = anchored.anchor_uid as is_anchor,
        case
            when anchored.component_size = 1 then 'single'
            when anchored.member_uid = anchored.anchor_uid then 'anchor'
            else coalesce(parents.link_rule, 'linked_from')
        end as link_rule,
        coalesce(parent_members.member_key, children.member_key) as linked_member_key
    from anchored
    left join parents on parents.member_uid = anchored.member_uid
    left join members as parent_members on parent_members.member_uid = parents.parent_uid
    left join (
        -- a record no rule attached to anything (it is the target of links): its earliest child
        select parents.parent_uid, arg_min(members.member_key, (members.member_at, members.member_key)) as member_key
        from parents join members on members.member_uid = parents.member_uid
        group by parents.parent_uid
    ) as children on children.parent_uid = anchored.member_uid

)

select * from final order by incident_id, member_at, member_key
