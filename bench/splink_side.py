"""Splink 5 on the same standardised person records (run in its own venv: /tmp/splink-venv/bin/python).

Usage: splink_side.py INPUT.parquet OUTPUT.parquet [THRESHOLD]; prints one JSON line of timings.
"""

from __future__ import annotations

import json
import sys
import time

import duckdb
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on


def main(inp: str, out: str, threshold: float) -> None:
    """Train (u by random sampling, m by EM per blocking session), predict, cluster, write (uid, cluster)."""
    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"""create table people as
        select record_uid as unique_id, name_std, name_pinyin, id_std,
               id_prefix6 || '*' || id_suffix4 as id_masked, birth_date::varchar as birth_date, sex, phone_std,
               address_key, community
        from read_parquet('{inp}') where not coalesce(is_deleted, false)""")
    db_api = DuckDBAPI(connection=con)
    df = db_api.register("people")
    name = cl.CustomComparison(output_column_name="name", comparison_levels=[
        cll.NullLevel("name_std"),
        cll.ExactMatchLevel("name_std").configure(tf_adjustment_column="name_std"),
        cll.ExactMatchLevel("name_pinyin"),
        cll.JaroWinklerLevel("name_pinyin", 0.94),
        cll.ElseLevel()])
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            name,
            cl.ExactMatch("id_std"),
            cl.ExactMatch("id_masked"),
            cl.DamerauLevenshteinAtThresholds("birth_date", [1]),
            cl.ExactMatch("sex"),
            cl.ExactMatch("phone_std").configure(term_frequency_adjustments=True),
            cl.ExactMatch("address_key"),
            cl.ExactMatch("community"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("id_std"), block_on("phone_std"), block_on("id_masked"), block_on("name_std", "birth_date"),
            block_on("name_pinyin", "birth_date"), block_on("name_std", "address_key")],
        retain_matching_columns=False,
    )
    linker = Linker(df, settings)
    linker.training.estimate_probability_two_random_records_match([block_on("id_std")], recall=0.9)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    t_train0 = time.perf_counter()
    for rule in (block_on("name_std", "birth_date"), block_on("phone_std"), block_on("id_std")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    t_train = time.perf_counter()
    pred = linker.inference.predict(threshold_match_probability=threshold)
    t_pred = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold)
    con.execute(f"copy (select unique_id as record_uid, cluster_id::varchar as person_id "
                f"from {clusters.physical_name}) to '{out}' (format parquet)")
    t_end = time.perf_counter()
    print(json.dumps({"seconds": round(t_end - t0, 2), "train": round(t_train - t0, 2),
                      "em": round(t_train - t_train0, 2), "predict": round(t_pred - t_train, 2),
                      "cluster+write": round(t_end - t_pred, 2),
                      "pairs_above_threshold": con.execute(f"select count(*) from {pred.physical_name}").fetchone()[0]}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.999)
