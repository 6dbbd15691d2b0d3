"""Generic entity resolution in DuckDB: profiles, blocking, Fellegi–Sunter with EM, constrained clusters, stable ids."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from . import cluster, estimate, functions, incremental, pairs, profiles, score, stable_ids
from .config import Comparison, Level, ResolverConfig
from .errors import ResolveError, ResolverConfigError

__all__ = ["Comparison", "Level", "ResolveError", "ResolveResult", "ResolverConfig", "ResolverConfigError",
           "resolve"]


@dataclass
class ResolveResult:
    """What one run did: sizes at each step, id changes, seconds per step, the estimated parameters."""

    run_id: str
    records: int
    profiles: int
    pairs_scored: int
    links: int
    clusters: int
    changes: dict[str, int]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)


def _check_input(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> None:
    schema, _, table = cfg.input_table.rpartition(".")
    row = con.execute(
        "select count(*) from information_schema.tables where table_name = ? and (? = '' or table_schema = ?)",
        [table, schema, schema]).fetchone()
    if not row or row[0] == 0:
        raise ResolveError(f"input table {cfg.input_table} does not exist; build it first "
                           f"(for persons: the standardisation step that writes staging.stg_person_records)")


def _drop_work(con: duckdb.DuckDBPyConnection) -> None:
    """Drop the work tables and views (temporary, named with profiles.WORK_PREFIX)."""
    like = profiles.WORK_PREFIX.replace("_", "\\_") + "%"
    for kind, listing in (("view", "duckdb_views"), ("table", "duckdb_tables")):
        for (name,) in con.execute(f"select {kind}_name from {listing}() where database_name = 'temp' "
                                   f"and {kind}_name like ? escape '\\'", [like]).fetchall():
            con.execute(f"drop {kind} temp.{name}")


def resolve(con: duckdb.DuckDBPyConnection, config: ResolverConfig, *, run_id: str | None = None,
            mode: str = "full") -> ResolveResult:
    """Resolve `config.input_table` into `config.output_table`, keeping ids stable; returns counts.

    mode "full" resolves every record and re-estimates the parameters; "auto" re-resolves only the
    persons what changed since the last run can touch (see warehouse/resolve/incremental.py) and
    falls back to a full run when that is not possible or not worth it (the reason is recorded).
    Opens no transaction of its own: wrap the call in `warehouse.db.transaction(con)` to commit all or
    nothing. Work tables are temporary (resolve_work_*), dropped at the end.
    """
    if mode not in ("full", "auto"):
        raise ResolveError(f"mode {mode!r}: use 'full' or 'auto'")
    started = datetime.now(UTC)
    run_id = run_id or f"resolve-{config.name}-{started:%Y%m%dT%H%M%S%f}"
    _check_input(con, config)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str, since: list[float]) -> None:
        now = time.perf_counter()
        timings[name] = round(now - since[0], 3)
        since[0] = now

    mark = [t0]
    functions.register(con)
    _drop_work(con)
    stable_ids.ensure_output(con, config)
    plan: dict[str, Any] = _plan(con, config) if mode == "auto" else {"mode": "full", "why": "asked for a full run"}
    lap("changes", mark)
    if plan["mode"] == "incremental":
        params: estimate.Parameters = plan.pop("params")
        incremental.split_known(con, config)
        sub_records, persons = incremental.neighbourhood(con, config)
        plan |= {"records_resolved": sub_records, "persons_touched": persons,
                 "identical_to_known": incremental.count(con, f"{profiles.WORK}known")}
        lap("neighbourhood", mark)
        n_records, n_profiles = profiles.build(
            con, config, only=f"{profiles.WORK}subset",
            tf_from={c: incremental.tf_table(config, c) for c in config.tf_columns})
        n_records = int(plan["records"])  # the run row counts the whole input, as a full run does
        lap("profiles", mark)
        n_pairs = pairs.build(con, config)
        lap("blocking+comparisons", mark)
        n_links, n_clusters = _link_and_cluster(con, config, params, lap, mark)
        changes = stable_ids.apply(con, config, run_id, started, replace=f"{profiles.WORK}affected")
        incremental.write_known(con, config, run_id, started)
        incremental.save_state(con, config, full=False)
        incremental.keep_touched(con, config)
        lap("stable ids+write", mark)
        n_patterns = 0
    else:
        n_records, n_profiles = profiles.build(con, config)
        lap("profiles", mark)
        n_pairs = pairs.build(con, config)
        lap("blocking+comparisons", mark)
        n_random = pairs.random_pairs(con, config, n_profiles)
        u = estimate.estimate_u(con, config)
        lap("u from random pairs", mark)
        gam, counts, masks = estimate.patterns(con, config)
        params = estimate.em(config, gam, counts, masks, u)
        params.u_floor = 0.5 / max(n_random, 1) * 1.01
        n_patterns = int(len(counts))
        lap("em", mark)
        n_links, n_clusters = _link_and_cluster(con, config, params, lap, mark)
        changes = stable_ids.apply(con, config, run_id, started)
        incremental.hash_all(con, config)
        incremental.save_state(con, config, full=True)
        con.execute(f"drop table if exists temp.{incremental.touched_table(config)}")
        lap("stable ids+write", mark)
    _drop_work(con)
    seconds = round(time.perf_counter() - t0, 3)
    param_json = params.as_json(config) | {"patterns": n_patterns, "timings": timings,
                                           "config": incremental.fingerprint(config)} | plan
    con.execute("insert into meta.resolution_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, config.name, started, datetime.now(UTC), n_records, n_profiles, n_pairs, n_links,
                 n_clusters, json.dumps(param_json, ensure_ascii=False), seconds])
    return ResolveResult(run_id, n_records, n_profiles, n_pairs, n_links, n_clusters, changes, seconds,
                         timings, param_json)


def _link_and_cluster(con: duckdb.DuckDBPyConnection, config: ResolverConfig, params: estimate.Parameters,
                      lap: Callable[[str, list[float]], None], mark: list[float]) -> tuple[int, int]:
    """Score the pairs, cluster the profiles, assign every record; return (links, clusters)."""
    n_links = score.build(con, config, params)
    lap("scoring", mark)
    n_clusters = cluster.build(con, config)
    lap("clustering", mark)
    stable_ids.assign_records(con, config)
    return n_links, n_clusters


def _plan(con: duckdb.DuckDBPyConnection, config: ResolverConfig) -> dict[str, Any]:
    """Decide between an incremental and a full run; the reason goes to meta.resolution_runs."""
    if not incremental.has_state(con, config):
        return {"mode": "full", "why": "no stored state (first run)"}
    params = incremental.stored_parameters(con, config)
    if params is None:
        return {"mode": "full", "why": "no parameters of a full run with this configuration"}
    changed, removed, total = incremental.find_changes(con, config)
    share = (changed + removed) / max(total, 1)
    if share > incremental.MAX_CHANGED_SHARE:
        return {"mode": "full", "why": f"{changed + removed:,} of {total:,} records changed ({share:.0%})",
                "changed": changed, "removed": removed}
    return {"mode": "incremental", "params": params, "changed": changed, "removed": removed, "records": total}
