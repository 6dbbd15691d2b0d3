"""Generic entity resolution in DuckDB: profiles, blocking, Fellegi–Sunter with EM, constrained clusters, stable ids."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb

from . import cluster, estimate, functions, pairs, profiles, score, stable_ids
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
    # Table by table: DuckDB 1.5 fails the commit after a `drop schema ... cascade` of tables made
    # in the same transaction ("another transaction has dropped this table").
    for (name,) in con.execute("select table_name from duckdb_tables() where schema_name = ?",
                               [profiles.WORK]).fetchall():
        con.execute(f"drop table {profiles.WORK}.{name}")
    con.execute(f"drop schema if exists {profiles.WORK}")


def resolve(con: duckdb.DuckDBPyConnection, config: ResolverConfig, *, run_id: str | None = None) -> ResolveResult:
    """Resolve `config.input_table` into `config.output_table`, keeping ids stable; returns counts.

    Opens no transaction of its own: wrap the call in `warehouse.db.transaction(con)` to commit all or
    nothing. Work tables live in schema resolve_work, dropped at the end.
    """
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
    con.execute(f"create schema {profiles.WORK}")
    stable_ids.ensure_output(con, config)
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
    lap("em", mark)
    n_links = score.build(con, config, params)
    lap("scoring", mark)
    n_clusters = cluster.build(con, config)
    lap("clustering", mark)
    stable_ids.assign_records(con, config)
    changes = stable_ids.apply(con, config, run_id, started)
    lap("stable ids+write", mark)
    _drop_work(con)
    seconds = round(time.perf_counter() - t0, 3)
    param_json = params.as_json(config) | {"patterns": int(len(counts)), "timings": timings}
    con.execute("insert into meta.resolution_runs values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, config.name, started, datetime.now(UTC), n_records, n_profiles, n_pairs, n_links,
                 n_clusters, json.dumps(param_json, ensure_ascii=False), seconds])
    return ResolveResult(run_id, n_records, n_profiles, n_pairs, n_links, n_clusters, changes, seconds,
                         timings, param_json)
