"""Splink 5 on the same standardised person records (run in its own venv: /tmp/splink-venv/bin/python).

Usage: splink_side.py INPUT.parquet OUTPUT.parquet [THRESHOLD [MEMORY_LIMIT THREADS TEMP_DIR]];
prints one JSON line of timings: "seconds" runs from the input loaded into Splink's DuckDB to the
clusters written (imports and loading the parquet excluded, as bench/resolution_ours_side.py
excludes its input copy; "load" is the loading). With MEMORY_LIMIT, Splink's DuckDB connection is a database file in
TEMP_DIR (so it can spill there) capped at MEMORY_LIMIT with THREADS threads.
"""

from __future__ import annotations

import json
import os
import sys
import time

import duckdb
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(inp: str, out: str, threshold: float, memory_limit: str | None = None, threads: int | None = None,
         temp_dir: str | None = None) -> None:
    """Train (u by random sampling, m by EM per blocking session), predict, cluster, write (uid, cluster)."""
    t_load = time.perf_counter()
    if memory_limit and temp_dir:
        os.makedirs(temp_dir, exist_ok=True)
        con = duckdb.connect(os.path.join(temp_dir, "splink.duckdb"))
        con.execute(f"set memory_limit = '{memory_limit}'")
        con.execute(f"set temp_directory = '{temp_dir}'")
        con.execute("set preserve_insertion_order = false")
        if threads:
            con.execute(f"set threads = {int(threads)}")
    else:
        con = duckdb.connect()
    con.execute(f"""create table people as
        select record_uid as unique_id, name_std, name_pinyin, id_std,
               id_prefix6 || '*' || id_suffix4 as id_masked, birth_date::varchar as birth_date, sex, phone_std,
               address_key, community
        from read_parquet('{inp}')""")  # already filtered as our configuration filters
    t0 = time.perf_counter()
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
    _progress(f"u estimated at {t_train0 - t0:.1f} s")
    for rule in (block_on("name_std", "birth_date"), block_on("phone_std"), block_on("id_std")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    t_train = time.perf_counter()
    _progress(f"EM done at {t_train - t0:.1f} s")
    pred = linker.inference.predict(threshold_match_probability=threshold)
    t_pred = time.perf_counter()
    _progress(f"predict done at {t_pred - t0:.1f} s")
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold)
    con.execute(f"copy (select unique_id as record_uid, cluster_id::varchar as person_id "
                f"from {clusters.physical_name}) to '{out}' (format parquet)")
    t_end = time.perf_counter()
    row = con.execute(f"select count(*) from {pred.physical_name}").fetchone()
    print(json.dumps({"seconds": round(t_end - t0, 2), "load": round(t0 - t_load, 2), "train": round(t_train - t0, 2),
                      "em": round(t_train - t_train0, 2), "predict": round(t_pred - t_train, 2),
                      "cluster+write": round(t_end - t_pred, 2),
                      "pairs_above_threshold": row[0] if row else 0}))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], float(a[2]) if len(a) > 2 else 0.999, a[3] if len(a) > 3 else None,
         int(a[4]) if len(a) > 4 else None, a[5] if len(a) > 5 else None)
