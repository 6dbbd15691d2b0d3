-- city city.person_history: what each silo of the district holds of a person, when.
-- grain: one row per person and source; key (person_id, source).
select person_source.person_id, person_source.source, count(*) as records,
       min(person_records.seen_at) as first_seen_at, max(person_records.seen_at) as last_seen_at
from core.person_source
join staging.stg_person_records person_records using (record_uid)
group by all
order by person_id, source
