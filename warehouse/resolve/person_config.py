"""The person configuration of the resolver for our four silos (input: staging.stg_person_records)."""

from __future__ import annotations

from .config import ResolverConfig

# Plain data, so the same structure can live in YAML; ResolverConfig.from_dict checks it.
PERSON = {
    "name": "person",
    "input_table": "staging.stg_person_records",
    "id_column": "record_uid",
    "source_column": "source",
    "key_column": "record_key",
    # Soft-deleted registry rows (people who left) are resolved too: their records still belong to
    # a person, and nothing may drop out of core.person_source. Survivorship takes the home from
    # the latest non-deleted registry row.
    "filter": "true",
    "columns": ["name_std", "name_pinyin", "surname", "id_std", "id_prefix6", "id_suffix4", "birth_date",
                "sex", "phone_std", "address_key", "address_compound", "community",
                "home_building", "reported_building", "reporter_role", "phone_holders"],
    "blocking_rules": [
        "l.id_std = r.id_std",
        "l.phone_std = r.phone_std",
        # A masked ID (prefix + suffix) against anything: one-sided, because among full IDs the same
        # prefix and suffix is a coincidence that would flood the candidates (rules may be one-sided).
        "l.id_std is null and l.id_prefix6 = r.id_prefix6 and l.id_suffix4 = r.id_suffix4",
        "l.name_std = r.name_std and l.birth_date = r.birth_date",
        "l.name_pinyin = r.name_pinyin and l.birth_date = r.birth_date",
        "l.name_std = r.name_std and l.address_key = r.address_key",
        # A named caller about their own building (one-sided: a ticket's place against a home).
        "l.name_std = r.name_std and l.reported_building = r.home_building",
    ],
    "comparisons": [
        {"name": "name", "null_condition": "l.name_std is null or r.name_std is null",
         "levels": [
             {"label": "exact", "condition": "l.name_std = r.name_std", "tf_column": "name_std", "evidence": 1},
             {"label": "same pinyin", "condition": "l.name_pinyin = r.name_pinyin", "tf_column": "name_pinyin",
              "evidence": 1},
             # DuckDB's own similarity counts UTF-8 bytes; char_jaro_winkler counts characters. It is
             # a Python function: the CASE calls it only on pairs with the same surname (DuckDB
             # evaluates both sides of an AND), a tenth of the random pairs u is estimated on.
             {"label": "similar", "condition": "case when l.surname = r.surname"
                                               " then char_jaro_winkler(l.name_std, r.name_std) >= 0.9 end"
                                               " or jaro_winkler_similarity(l.name_pinyin, r.name_pinyin) >= 0.94",
              "evidence": 1},
         ],
         # Phones are shared within a family: two different names are two people, whatever else agrees.
         "veto_levels": ["different"]},
        {"name": "id", "null_condition": "l.id_prefix6 is null or r.id_prefix6 is null",
         "levels": [
             {"label": "exact", "condition": "l.id_std = r.id_std", "evidence": 2},
             {"label": "masked match", "condition": "l.id_prefix6 = r.id_prefix6 and l.id_suffix4 = r.id_suffix4"
                                                    " and (l.id_std is null or r.id_std is null)", "evidence": 1},
         ]},
        {"name": "birth_date", "null_condition": "l.birth_date is null or r.birth_date is null",
         "levels": [
             {"label": "exact", "condition": "l.birth_date = r.birth_date", "evidence": 1},
             {"label": "one part differs",
              "condition": "(year(l.birth_date) = year(r.birth_date))::int + (month(l.birth_date) = month(r.birth_date))::int"
                           " + (day(l.birth_date) = day(r.birth_date))::int = 2", "evidence": 1},
         ],
         # Namesakes are everywhere: a birth date that differs in more than one part is another person.
         "veto_levels": ["different"]},
        {"name": "sex", "null_condition": "l.sex is null or r.sex is null",
         "levels": [{"label": "exact", "condition": "l.sex = r.sex"}], "veto_levels": ["different"]},
        {"name": "phone", "null_condition": "l.phone_std is null or r.phone_std is null",
         "levels": [{"label": "exact", "condition": "l.phone_std = r.phone_std", "tf_column": "phone_std",
                     "evidence": 1}]},
        {"name": "address", "null_condition": "coalesce(l.address_key, l.community) is null"
                                              " or coalesce(r.address_key, r.community) is null",
         "levels": [
             {"label": "same room", "condition": "l.address_key = r.address_key"},
             {"label": "same compound", "condition": "l.address_compound = r.address_compound"},
             {"label": "same community", "condition": "l.community = r.community"},
         ]},
        # Second fields for a record that holds a phone and nothing else (issue #17 item 5). A phone
        # names a household more than a person, and so does a building: the building counts only when
        # something tells the person within the household, i.e. the phone is one named person's in all
        # our records (phone_holders 1), so it never picks one member of a household that shares the
        # phone; or the name is the same and no phone contradicts it (a named caller who gave no
        # phone, or a resident registered without one; a namesake in the building with a phone of
        # their own stays apart). One level for both, so EM estimates its m on all such pairs rather
        # than on the few named callers without a phone. Only a ticket's place against a registered
        # home: a city case's place is where the reporter saw it, not where they live.
        {"name": "home_building",
         "null_condition": "coalesce(l.reported_building, r.reported_building) is null"
                           " or coalesce(l.home_building, r.home_building) is null",
         "levels": [
             {"label": "same building, own phone or name",
              "condition": "(l.reported_building = r.home_building or r.reported_building = l.home_building)"
                           " and (l.phone_std = r.phone_std and l.phone_holders = 1"
                           " or l.name_std = r.name_std and (l.phone_std is null or r.phone_std is null))",
              "evidence": 1},
             {"label": "same building", "condition": "l.reported_building = r.home_building"
                                                         " or r.reported_building = l.home_building"},
         ]},
        # A case a grid worker reported against the grid workers' register: a family member who
        # shares the worker's phone does not report as 网格员.
        {"name": "reporter_role", "null_condition": "l.reporter_role is null or r.reporter_role is null",
         "levels": [{"label": "same role", "condition": "l.reporter_role = r.reporter_role", "evidence": 1}]},
    ],
    "vetoes": [
        "l.id_std <> r.id_std",
        # A masked ID's ten digits (prefix and suffix) more than one typo (a wrong digit, two adjacent
        # digits swapped) from the other's: another person. One typo is no veto, and no evidence
        # either (the id comparison says 'different'): the pair still needs two agreeing fields, such
        # as name and phone. A masked ID cannot be checked, so a typo in it goes unnoticed.
        "damerau_levenshtein(l.id_prefix6 || l.id_suffix4, r.id_prefix6 || r.id_suffix4) > 1",
    ],
    "anchor_column": "id_std",
    "anchor_rule": "same valid ID",
    "exclusive_columns": ["id_prefix6 || '*' || id_suffix4"],
    # ... and so a masked ID one typo from the cluster's may join it.
    "exclusive_near": {"id_prefix6 || '*' || id_suffix4": "damerau_levenshtein({a}, {b}) <= 1"},
    "threshold": 0.999,
    # Two namesakes registered in one building and a caller who gave that name and no phone: the
    # caller's links to both score the same, and picking one is a guess (issue #17 item 5).
    "refuse_ties": True,
    # A link needs two identifying fields that agree (name, ID, birth date, phone; a valid ID counts
    # twice), whatever the score: a record with only a phone (a nameless hotline caller) shares it
    # with a whole family. A missing value is no evidence. Sex and address are not counted: sex
    # tells little, and an address is shared by the household as a phone is; a caller's building
    # counts only with a phone no one else holds or the same name without a differing phone, and a
    # grid worker's role on their own cases.
    "min_evidence": 2,
    "output_table": "core.person_source",
    "id_prefix": "P",
    "id_digits": 9,
}

PERSON_CONFIG = ResolverConfig.from_dict(PERSON)


def person_config(**overrides: object) -> ResolverConfig:
    """PERSON_CONFIG with some fields replaced (e.g. another input table for a benchmark)."""
    return ResolverConfig.from_dict(PERSON | overrides)
