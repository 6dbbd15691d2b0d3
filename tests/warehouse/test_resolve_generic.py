"""The resolver on a non-person table (company contacts), through its own configuration."""

from __future__ import annotations

import pytest

from warehouse import db
from warehouse.resolve import ResolverConfig, ResolverConfigError, resolve

CONTACTS = {
    "name": "contact",
    "input_table": "crm.contacts",
    "id_column": "contact_id",
    "source_column": "system",
    "key_column": "contact_id",
    "columns": ["company", "email", "phone", "city", "tax_no"],
    "blocking_rules": ["l.phone = r.phone", "l.email = r.email", "l.company = r.company and l.city = r.city",
                       "l.tax_no = r.tax_no"],
    "comparisons": [
        {"name": "company", "null_condition": "l.company is null or r.company is null",
         "levels": [{"label": "exact", "condition": "l.company = r.company", "tf_column": "company"},
                    {"label": "similar", "condition": "char_jaro_winkler(l.company, r.company) >= 0.9"}],
         "veto_levels": ["different"]},
        {"name": "email", "null_condition": "l.email is null or r.email is null",
         "levels": [{"label": "exact", "condition": "l.email = r.email"}]},
        {"name": "phone", "null_condition": "l.phone is null or r.phone is null",
         "levels": [{"label": "exact", "condition": "l.phone = r.phone"}]},
        {"name": "city", "null_condition": "l.city is null or r.city is null",
         "levels": [{"label": "exact", "condition": "l.city = r.city"}]},
    ],
    "anchor_column": "tax_no",
    "anchor_rule": "same tax number",
    "threshold": 0.99,
    "output_table": "crm.contact_entity",
    "id_prefix": "C",
    "id_digits": 6,
    "u_sample_pairs": 50_000,
}

# 400 companies, 1-3 contact records each: some lose the tax number, some the e-mail, a few get a
# one-character typo in the name; companies 0-39 share a phone with their neighbour (a shared switchboard).
BUILD = """
create schema if not exists crm;
create or replace table crm.contacts as
with companies as (
    select i as entity, 'company-' || i as truth,
           '公司' || chr((19968 + (i * 7919) % 20000)::int) || chr((19968 + (i * 104729) % 20000)::int) || '有限公司' as company,
           'info' || i || '@example.cn' as email,
           '1380000' || lpad((case when i < 40 then i // 2 else i end)::varchar, 4, '0') as phone,
           (['武汉', '长沙', '南昌'])[1 + i % 3] as city,
           '91420100' || lpad(i::varchar, 10, '0') as tax_no
    from range(400) t(i)
),
copies as (select c.*, k from companies c, range(1 + entity % 3) r(k))
select 'crm-' || lpad(entity::varchar, 4, '0') || '-' || k as contact_id,
       case when k = 0 then 'erp' else 'crm' end as system, truth,
       case when k = 2 and entity % 5 = 0 then company[:2] || chr((19968 + (entity * 31) % 20000)::int) || company[4:]
            else company end as company,
       case when k = 1 and entity % 4 = 0 then null else email end as email,
       phone, city,
       case when k > 0 then null else tax_no end as tax_no
from copies
"""


@pytest.fixture
def con(tmp_path):
    c = db.connect(tmp_path / "warehouse.duckdb")
    c.execute(BUILD)
    yield c
    c.close()


def test_contacts_resolve_through_their_own_configuration(con):
    cfg = ResolverConfig.from_dict(CONTACTS)
    with db.transaction(con):
        result = resolve(con, cfg)
    assert result.records == con.execute("select count(*) from crm.contacts").fetchone()[0]
    tp, pred, act = con.execute("""
        with t as (select c.truth, e.person_id from crm.contacts c join crm.contact_entity e
                   on e.record_uid = c.contact_id),
             b as (select count(*) n from t group by truth, person_id),
             p as (select count(*) n from t group by person_id),
             a as (select count(*) n from t group by truth)
        select (select sum(n*(n-1)/2) from b), (select sum(n*(n-1)/2) from p), (select sum(n*(n-1)/2) from a)
    """).fetchone()
    assert tp / pred >= 0.99 and tp / act >= 0.9, (tp, pred, act)
    # Shared switchboards never merge two companies with different tax numbers.
    assert con.execute("""select count(*) from (select e.person_id from crm.contacts c join crm.contact_entity e
                          on e.record_uid = c.contact_id group by 1 having count(distinct c.tax_no) > 1)""").fetchone()[0] == 0
    assert con.execute("select min(person_id) from crm.contact_entity").fetchone()[0] == "C000001"
    rules = {r[0] for r in con.execute("select link_rule from crm.contact_entity").fetchall()}
    assert "same tax number" in rules and any(r.startswith("score ") for r in rules)
    params = con.execute("select parameters from meta.resolution_runs where entity = 'contact'").fetchone()[0]
    assert '"company"' in params and '"lambda"' in params


def test_configuration_errors_name_the_field():
    with pytest.raises(ResolverConfigError, match="unknown configuration keys"):
        ResolverConfig.from_dict(CONTACTS | {"treshold": 0.9})
    with pytest.raises(ResolverConfigError, match="tf_column"):
        ResolverConfig.from_dict(CONTACTS | {"comparisons": [
            {"name": "x", "levels": [{"label": "exact", "condition": "l.a = r.a", "tf_column": "nope"}]}]})
    with pytest.raises(ResolverConfigError, match="anchor_column"):
        ResolverConfig.from_dict(CONTACTS | {"anchor_column": "vat"})
    with pytest.raises(ResolverConfigError, match="min_evidence"):
        ResolverConfig.from_dict(CONTACTS | {"min_evidence": 2})  # no level carries evidence: nothing could link
    with pytest.raises(ResolverConfigError, match="evidence must be >= 0"):
        ResolverConfig.from_dict(CONTACTS | {"comparisons": [
            {"name": "x", "levels": [{"label": "exact", "condition": "l.a = r.a", "evidence": -1}]}]})
    with pytest.raises(ResolverConfigError, match="not one of exclusive_columns"):
        ResolverConfig.from_dict(CONTACTS | {"exclusive_near": {"email": "levenshtein({a}, {b}) <= 1"}})
    with pytest.raises(ResolverConfigError, match="a condition on"):
        ResolverConfig.from_dict(CONTACTS | {"exclusive_columns": ["email"], "exclusive_near": {"email": "true"}})


def test_min_evidence_is_configuration(con):
    """The same contacts with min_evidence 2 on e-mail and phone: a contact without an e-mail no longer links."""
    comparisons = [dict(c) for c in CONTACTS["comparisons"]]
    for c in comparisons:
        c["levels"] = [lv | {"evidence": 1} for lv in c["levels"]] if c["name"] in ("email", "phone") else c["levels"]
    strict = ResolverConfig.from_dict(CONTACTS | {"comparisons": comparisons, "min_evidence": 2})
    loose = ResolverConfig.from_dict(CONTACTS | {"comparisons": comparisons, "min_evidence": 0})
    with db.transaction(con):
        resolve(con, loose)
    loose_links = con.execute("select count(*) from crm.contact_entity where link_rule like 'score %'").fetchone()[0]
    with db.transaction(con):
        resolve(con, strict)
    reasons = [r[0] for r in con.execute(
        "select link_rule from crm.contact_entity where link_rule like 'score %'").fetchall()]
    assert len(reasons) < loose_links
    # every link that is left agrees on both e-mail and phone; a missing e-mail is no evidence
    assert reasons and all("email exact" in r and "phone exact" in r for r in reasons), reasons[:5]


def _per_cluster(con, system: str) -> int:
    """The most different records of `system` any one cluster holds (identical copies are one record)."""
    return con.execute("""select max(n) from (select e.person_id,
                                 count(distinct (c.company, c.email, c.phone, c.city, c.tax_no)) as n
                          from crm.contact_entity e
                          join crm.contacts c on c.contact_id = e.record_uid where c.system = ? group by 1)""",
                       [system]).fetchone()[0]


def test_link_only_and_one_to_one_are_configuration(con):
    """erp holds each company once, crm up to twice: link_only never pairs two crm records; one_to_one
    lets each erp record take one crm record, its mutual best, so crm's two different copies stay apart."""
    base = CONTACTS | {"blocking_rules": ["l.phone = r.phone", "l.email = r.email"]}
    with db.transaction(con):
        resolve(con, ResolverConfig.from_dict(base))
    assert _per_cluster(con, "crm") == 2  # dedupe: crm's own copies meet
    with db.transaction(con):
        resolve(con, ResolverConfig.from_dict(base | {"link_type": "link_only"}))
    # link_only: both crm copies link to the erp record, so they still meet through it
    assert _per_cluster(con, "crm") == 2
    no_erp = con.execute("""select count(*) from crm.contact_entity e join crm.contacts c on c.contact_id = e.record_uid
                            where c.system = 'crm' and e.link_rule like 'score %'
                              and e.linked_record_uid in (select contact_id from crm.contacts where system = 'crm')""").fetchone()[0]
    assert no_erp == 0  # ... but never by a crm-crm link
    with db.transaction(con):
        result = resolve(con, ResolverConfig.from_dict(base | {"link_type": "link_only", "one_to_one": True}))
    assert _per_cluster(con, "crm") == 1 and _per_cluster(con, "erp") == 1
    assert result.links > 0
    # nearly every company with a crm copy has it linked to its erp record
    linked = con.execute("""select count(*) from (select e.person_id from crm.contact_entity e
                            join crm.contacts c on c.contact_id = e.record_uid
                            group by 1 having count(distinct c.system) = 2)""").fetchone()[0]
    with_copies = con.execute("select count(distinct truth) from crm.contacts where system = 'crm'").fetchone()[0]
    assert linked >= 0.95 * with_copies, (linked, with_copies)


def test_u_sample_scales_with_the_input():
    cfg = ResolverConfig.from_dict(CONTACTS | {"u_sample_pairs": None})
    assert cfg.u_pairs(1_000) == 50_000
    assert cfg.u_pairs(10) == 10_000  # a floor, so u still sees rare agreement
    assert cfg.u_pairs(3_000_000) == 1_000_000  # a ceiling, as Splink's default
    assert ResolverConfig.from_dict(CONTACTS).u_pairs(3_000_000) == 50_000  # an explicit number wins
    with pytest.raises(ResolverConfigError, match="link_type"):
        ResolverConfig.from_dict(CONTACTS | {"link_type": "link"})


def _output(con) -> list[tuple]:
    return con.execute("select record_uid, person_id, link_rule, match_weight, linked_record_uid "
                       "from crm.contact_entity order by record_uid").fetchall()


@pytest.mark.parametrize("link_type", ["dedupe", "link_only"])
def test_profiles_survive_hash_collisions(con, monkeypatch, link_type):
    """Profiles are grouped on a hash of the values; when different values share a hash (forced here:
    a hash of the first column only), they are grouped on the values, with the same result."""
    from warehouse.resolve import profiles

    cfg = ResolverConfig.from_dict(CONTACTS | {"link_type": link_type})
    with db.transaction(con):
        expected = resolve(con, cfg)
    want = _output(con)
    con.execute("delete from crm.contact_entity; delete from meta.id_counters")
    monkeypatch.setattr(profiles, "hash_sql", lambda columns: f"hash({columns[0]})")
    with db.transaction(con):
        got = resolve(con, cfg)
    assert got.profiles == expected.profiles and got.clusters == expected.clusters
    assert _output(con) == want


def test_a_label_with_an_apostrophe_is_text_not_sql(con):
    """Labels come from configuration: one holding a quote reads back in the link's reason."""
    comparisons = [dict(c) for c in CONTACTS["comparisons"]]
    comparisons[1] = comparisons[1] | {"levels": [{"label": "exact (o'brien's rule)",
                                                  "condition": "l.email = r.email"}]}
    cfg = ResolverConfig.from_dict(CONTACTS | {"comparisons": comparisons})
    with db.transaction(con):
        resolve(con, cfg)
    reasons = [r[0] for r in con.execute("select link_rule from crm.contact_entity where link_rule like 'score %'")
               .fetchall()]
    assert any("email exact (o'brien's rule)" in r for r in reasons), reasons[:5]
