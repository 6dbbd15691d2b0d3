-- analyst mart.resolution_summary: per silo, how many records became how many golden persons;
-- the row with source null is the whole district (persons counted once across silos).
-- Persons per silo come from core.person.sources (the silos of each person's records, built with
-- core.person from the same links): at 1.3M residents a distinct count over core.person_source's
-- 3.7M links took 1.3 CPU-s of every publish, this a tenth of it (issue #13).
with

records as (

    select source, count(*) as records
    from core.person_source
    group by grouping sets ((source), ())

),

persons as (

    select source, count(*) as persons
    from (select unnest(sources) as source from core.person)
    group by source
    union all
    select null, count(*) from core.person

)

select records.source, records.records, coalesce(persons.persons, 0) as persons
from records
left join persons on persons.source is not distinct from records.source
