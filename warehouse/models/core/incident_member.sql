-- core.incident_member: which incident each hotline ticket and city case belongs to, and why.
-- grain: one row per ticket or case; key (source, member_key).
-- Linking: each record is attached to at most one earlier-known record (its parent); an incident is
-- a connected group of records. Rules, strongest first:
--   transfer_reference   a case whose source_ticket_id names a ticket (12345转办) -> that ticket
--   same_place_category  a case without reference -> the ticket at the same compound + building,
--                        category compatible by core.incident_category_map, the case reported from
--                        12 h before to 24 h after the ticket was received, whose text tells of the
--                        same problem (below); the one naming the same unit or spot, then the most
--                        similar, then the nearest in time
--   repeat_ticket        a ticket -> the earlier ticket at the same compound + building, of the same
--                        category, received at most 48 h before it, whose text tells of the same
--                        problem; the one naming the same unit or spot, then the most similar, then
--                        the earliest. A ticket that a case was transferred from opened its own
--                        incident and is never a repeat.
-- Same problem: the texts (a ticket's 诉求内容, a case's description) share at least two character
-- bigrams and have a cosine similarity of at least 0.1 over their bigrams weighted by tf-idf (document
-- frequencies over the tickets), and do not name two different units ("2单元" / "3单元") or only
-- different spots at the building ("北门" / "小广场"; the words are listed in spot_words below, vague
-- ones like "附近" never differ). Bigrams are taken on characters, not bytes (substring() and
-- length() count characters in DuckDB), on the text without the place (compound, "7号楼"), the unit,
-- the spot words and punctuation: every candidate pair shares its place, and where at the building is
-- judged by the unit and spot rules (left in, a shared "1单元" made two problems look alike). Among a
-- record's candidates, the one naming the same unit or spot comes first: a shared detail of where
-- tells more than a longer text's similarity, which the cosine lowers. bench/incident_linking.py
-- measures precision and recall per rule against a generated district's truth.
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

member_texts as (

    -- what the caller said (诉求内容) or the case tells, without the place every candidate pair
    -- shares and without punctuation
    select
        'hotline.tickets:' || ticket_id as member_uid,
        regexp_replace(
            regexp_replace(
                case when address_compound is not null and address_compound <> ''
                    then replace(coalesce(content, ''), address_compound, '') else coalesce(content, '') end,
                '[0-9]+号楼', '', 'g'),
            '[^\p{Han}A-Za-z0-9]', '', 'g') as text
    from tickets
    union all
    select
        'city_cases.cases:' || case_id,
        regexp_replace(
            regexp_replace(
                case when address_compound is not null and address_compound <> ''
                    then replace(coalesce(description, ''), address_compound, '') else coalesce(description, '') end,
                '[0-9]+号楼', '', 'g'),
            '[^\p{Han}A-Za-z0-9]', '', 'g')
    from cases

),

spot_words(word, is_vague) as (

    -- where at a building a caller says the problem is. Two texts that each name a precise spot, and
    -- no spot in common, tell of two places; a vague word ("附近") agrees with any. Edit to widen.
    values
        ('东门', false), ('西门', false), ('南门', false), ('北门', false), ('大门', false), ('侧门', false),
        ('门口', false), ('东侧', false), ('西侧', false), ('南侧', false), ('北侧', false),
        ('东边', false), ('西边', false), ('南边', false), ('北边', false), ('楼下', false), ('楼顶', false),
        ('对面', false), ('后面', false), ('前面', false), ('电梯口', false), ('地下车库', false),
        ('地下室', false), ('停车场', false), ('小广场', false), ('花坛', false),
        ('附近', true), ('旁边', true), ('周边', true), ('周围', true), ('一带', true)

),

member_details as (

    -- the unit and the precise spots a text names (the place already taken out, so a compound
    -- called "东门小区" names no spot), and the rest: what the problem is. Where is judged by the
    -- unit and spot rules; left in the text, a shared "1单元" made two problems look alike
    select
        member_texts.member_uid,
        nullif(regexp_extract(member_texts.text, '([0-9]+)单元', 1), '') as unit,
        coalesce(
            list(spot_words.word order by spot_words.word) filter (where not spot_words.is_vague),
            []) as spots,
        -- the words found, longest first, replaced away (a regular expression built from the list
        -- would not be a constant, and DuckDB would compile it again for every row: 3x the time)
        list_reduce(
            coalesce(list(spot_words.word order by length(spot_words.word) desc, spot_words.word)
                filter (where spot_words.word is not null), []),
            (rest, word) -> replace(rest, word, ''),
            regexp_replace(member_texts.text, '[0-9]+单元', '', 'g')) as text
    from member_texts
    left join spot_words on contains(member_texts.text, spot_words.word)
    group by member_texts.member_uid, member_texts.text

),

member_bigrams as (

    -- character bigrams: substring() and length() count characters, not UTF-8 bytes
    select member_uid, gram, count(*) as tf
    from (
        select member_uid, unnest(list_transform(range(1, length(text)), i -> substring(text, i, 2))) as gram
        from member_details
    )
    group by all

),

bigram_weights as materialized (

    -- tf-idf: a bigram in many texts ("尽快", "反映") says little about which problem it is. The
    -- document frequencies are the tickets' (what callers say): the cases' descriptions repeat
    -- their category's name ("井盖破损") in thousands of records and would make the very words
    -- that name a problem count for little
    select
        member_bigrams.member_uid,
        member_bigrams.gram,
        member_bigrams.tf * ln((docs.n + 1) / (count(*) filter (where member_bigrams.member_uid like 'hotline.%')
            over (partition by member_bigrams.gram) + 1)) as w
    from member_bigrams
    cross join (select count(*) as n from tickets) as docs

),

text_norms as (

    select member_uid, sqrt(sum(w * w)) as norm from bigram_weights group by member_uid

),

place_candidates as (

    -- a case without a usable reference: tickets at its place, of a compatible category, the case
    -- reported from 12 h before to 24 h after the ticket was received
    select
        case_members.member_uid,
        ticket_members.member_uid as parent_uid,
        ticket_members.member_key as parent_key,
        abs(epoch(case_members.member_at) - epoch(ticket_members.member_at)) as seconds_apart
    from case_members
    join ticket_members on ticket_members.place_key = case_members.place_key
    join category_map
        on category_map.hotline_category = ticket_members.category
        and category_map.case_category_name = case_members.category
    where case_members.member_uid not in (select member_uid from transfer_parents)
        and case_members.member_at >= ticket_members.member_at - interval 12 hour
        and case_members.member_at <= ticket_members.member_at + interval 24 hour

),

repeat_candidates as (

    -- an earlier ticket at the same place, of the same category, at most 48 h before
    select
        later.member_uid,
        earlier.member_uid as parent_uid,
        earlier.member_key as parent_key,
        epoch(later.member_at) - epoch(earlier.member_at) as seconds_apart
    from ticket_members as later
    join ticket_members as earlier
        on earlier.place_key = later.place_key
        and earlier.category = later.category
        and (earlier.member_at, earlier.member_key) < (later.member_at, later.member_key)
    where later.member_at <= earlier.member_at + interval 48 hour
        and later.member_key not in (select ticket_id from transferred_tickets)

),

candidates as (

    select *, 'same_place_category' as link_rule, 2 as rule_rank from place_candidates
    union all
    select *, 'repeat_ticket', 3 from repeat_candidates

),

candidate_grams as materialized (

    -- the later record's bigrams, per candidate pair. Materialized so the join below is on (record,
    -- bigram): joined on the bigram alone first, common bigrams ("尽快") pair every text with every
    -- other, which at district scale filled the disk
    select pairs.member_uid, pairs.parent_uid, a.gram, a.w
    from (select distinct member_uid, parent_uid from candidates) as pairs
    join bigram_weights as a on a.member_uid = pairs.member_uid

),

candidate_dots as (

    select
        candidate_grams.member_uid,
        candidate_grams.parent_uid,
        sum(candidate_grams.w * b.w) as dot,
        count(*) as shared_grams
    from candidate_grams
    join bigram_weights as b on b.member_uid = candidate_grams.parent_uid and b.gram = candidate_grams.gram
    group by all

),

candidate_similarity as (

    -- cosine of the two texts' tf-idf bigram vectors; two texts naming two units ("2单元" /
    -- "3单元") or two spots ("北门" / "小广场") are two events whatever else they share
    select
        candidates.*,
        -- the same words are the same problem, even where every text says them (idf 0)
        -- one shared bigram is a word ("没人"), not a problem in common
        case when da.text <> '' and da.text = db.text then 1.0
            when coalesce(candidate_dots.shared_grams, 0) < 2 then 0.0
            else coalesce(candidate_dots.dot / nullif(la.norm * lb.norm, 0), 0) end as text_similarity,
        coalesce(da.unit <> db.unit, false) as unit_conflict,
        len(da.spots) > 0 and len(db.spots) > 0 and not list_has_any(da.spots, db.spots) as spot_conflict,
        -- how many details of where the two texts share (the unit, a spot): 0, 1 or 2
        coalesce(da.unit = db.unit, false)::int + list_has_any(da.spots, db.spots)::int as shared_details
    from candidates
    left join candidate_dots
        on candidate_dots.member_uid = candidates.member_uid
        and candidate_dots.parent_uid = candidates.parent_uid
    left join text_norms as la on la.member_uid = candidates.member_uid
    left join text_norms as lb on lb.member_uid = candidates.parent_uid
    left join member_details as da on da.member_uid = candidates.member_uid
    left join member_details as db on db.member_uid = candidates.parent_uid

),

place_parents as (

    -- the case's ticket: the most similar of those telling of the same problem, then the nearest in time
    select member_uid, parent_uid, link_rule, rule_rank
    from candidate_similarity
    where rule_rank = 2 and text_similarity >= 0.1 and not unit_conflict and not spot_conflict
    qualify row_number() over (
        partition by member_uid order by shared_details desc, text_similarity desc, seconds_apart, parent_key
    ) = 1

),

repeat_parents as (

    -- a repeated ticket: the most similar earlier ticket telling of the same problem
    select member_uid, parent_uid, link_rule, rule_rank
    from candidate_similarity
    where rule_rank = 3 and text_similarity >= 0.1 and not unit_conflict and not spot_conflict
    qualify row_number() over (
        partition by member_uid order by shared_details desc, text_similarity desc, seconds_apart desc, parent_key
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
