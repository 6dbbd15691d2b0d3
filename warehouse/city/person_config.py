"""The generic resolver configured for city persons: district persons, linked on city-keyed hashes.

Every input row is one district's person (not a source record): the district already resolved
its records. Values arrive as HMACs under the city key (warehouse/city/keys.py), so every
comparison is equality: same ID, same masked ID, same name or pinyin, same birth date, same phone.
"""

from __future__ import annotations

from warehouse.resolve import ResolverConfig

CITY_PERSON = {
    "name": "city_person",
    "input_table": "city_work.person_input",
    "id_column": "person_uid",
    "source_column": "district",
    "key_column": "person_id",
    "columns": ["id_key", "id_masked_key", "name_key", "pinyin_key", "birth_key", "birth_year", "sex",
                "phone_key", "phone2_key", "thin_uid"],
    "blocking_rules": [
        "l.id_key = r.id_key",
        "l.phone_key = r.phone_key",
        "l.phone_key = r.phone2_key",
        "l.phone2_key = r.phone_key",
        # A masked ID against anything, one-sided (see the district's person configuration).
        "l.id_key is null and l.id_masked_key = r.id_masked_key",
        "l.pinyin_key = r.pinyin_key and l.birth_key = r.birth_key",
    ],
    "comparisons": [
        {"name": "name", "null_condition": "l.pinyin_key is null or r.pinyin_key is null",
         "levels": [
             {"label": "exact", "condition": "l.name_key = r.name_key", "tf_column": "name_key", "evidence": 1},
             {"label": "same pinyin", "condition": "l.pinyin_key = r.pinyin_key", "tf_column": "pinyin_key",
              "evidence": 1},
         ],
         # Phones are shared within a family: two names are two people.
         "veto_levels": ["different"]},
        {"name": "id", "null_condition": "l.id_masked_key is null or r.id_masked_key is null",
         "levels": [
             {"label": "exact", "condition": "l.id_key = r.id_key", "evidence": 2},
             {"label": "masked match", "condition": "l.id_masked_key = r.id_masked_key"
                                                    " and (l.id_key is null or r.id_key is null)", "evidence": 1},
         ]},
        {"name": "birth", "null_condition": "l.birth_year is null or r.birth_year is null",
         "levels": [
             {"label": "exact", "condition": "l.birth_key = r.birth_key", "evidence": 1},
             {"label": "same year", "condition": "l.birth_year = r.birth_year"},
         ],
         "veto_levels": ["different"]},
        {"name": "sex", "null_condition": "l.sex is null or r.sex is null",
         "levels": [{"label": "exact", "condition": "l.sex = r.sex"}], "veto_levels": ["different"]},
        {"name": "phone", "null_condition": "coalesce(l.phone_key, l.phone2_key) is null"
                                            " or coalesce(r.phone_key, r.phone2_key) is null",
         "levels": [
             {"label": "exact", "condition": "l.phone_key = r.phone_key", "tf_column": "phone_key", "evidence": 1},
             {"label": "an older number", "condition": "l.phone_key = r.phone2_key or l.phone2_key = r.phone_key"
                                                       " or l.phone2_key = r.phone2_key", "evidence": 1},
         ]},
    ],
    "vetoes": ["l.id_key <> r.id_key", "l.id_masked_key <> r.id_masked_key"],
    "anchor_column": "id_key",
    "anchor_rule": "same valid ID (city key)",
    "exclusive_columns": ["id_masked_key"],
    "threshold": 0.999,
    "min_evidence": 2,
    "output_table": "core.person_source",
    "id_prefix": "C",
    "id_digits": 9,
}

CITY_PERSON_CONFIG = ResolverConfig.from_dict(CITY_PERSON)
