"""Publish what each audience may see as read-only snapshots, built from one declared policy.

The policy is this folder: `policy.toml` (the audiences, the checks their relations must pass, and
which relations are kept as one file per week) and one SQL file per published relation per audience
(`analyst/<schema>.<name>.sql`, `community/<schema>.<name>.sql`), run on the warehouse by the
pipeline. Nothing else of the warehouse reaches a reader: query, extract, report, export, dashboard
and the serving database all read these snapshots, never the warehouse.

Layout under `settings.published_dir()` (files 0640, folders 0750):

    analyst/versions/<version>/parquet/<schema>.<name>.parquet/   one folder per relation: its part
                                                                  files and a 0-row columns.parquet
    analyst/versions/<version>/manifest.json      per relation: rows, columns, types, content hash,
                                                  and each part's hash, rows and files
    analyst/versions/<version>/snapshot.duckdb    views over the Parquet (for tools; readers build
                                                  their own in-memory views, snapshot.py)
    analyst/current -> versions/<version>         swapped atomically (rename of a symlink)
    community/<folder>/versions/<version>/...     the same per community, only its rows; no DuckDB file
    community/communities.json                    code -> name and folder
    .district/versions/<version>/...              the community relations not cut in periods, every
                                                  community's rows in one file: what the serving
                                                  database loads (folder 0700: the pipeline alone)

A relation's rows are split in parts: per community for community snapshots, and per value, week
or month of a date column for the relations policy.toml lists under [partitions]. Each part carries
a content hash. A part whose hash
(and the relation's columns and types) equals the current version's is a hard link to that file,
not written again; only changed parts are written and value-checked. A file reaches a version
either written and checked by this publish, or linked from an earlier version that wrote and checked
it with the same content hash, so every published value has passed its audience's checks.

A version is written under a temporary name and renamed into place, so a reader always opens one
complete version; older versions are moved aside only when no reader holds them, and deleted by a
background process (snapshot.py). A community none of whose parts changed keeps its version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from warehouse import pseudonym
from warehouse.outputs import private_umask, safe_name
from warehouse.publish import permissions
from warehouse.publish.refresh import Refresh, carry_over, listed

log = logging.getLogger(__name__)

POLICY_DIR = Path(__file__).parent
AUDIENCES = ("analyst", "community")
# An 18-character ID number or an 11-digit mobile number anywhere in a value (separators allowed
# inside a phone); grid codes (12-17 digits) and ticket ids (letters + 13 digits) do not match.
ID_SHAPED = r"(^|[^0-9])[1-9][0-9]{5}(18|19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]($|[^0-9Xx])"
PHONE_SHAPED = r"(^|[^0-9])1[3-9][0-9]([ -]?[0-9]){8}($|[^0-9])"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
COLUMNS_FILE = "columns.parquet"  # 0 rows: the relation's columns even when it has no row
_NULL_KEY = "~null"
# The communities' relations for the whole district, in a folder only the pipeline account may enter:
# the serving database loads and compares one file per relation instead of one per community (at
# 186 communities, about 1,100 part files read twice a day: issue #13).
DISTRICT_COPY = ".district"
# A part's name, per row: DuckDB's 64-bit hash of its owner and key (an md5 cost three times as much
# per row, issue #13), under a seed that changes only if two parts' names collide (see _parts).
PART_NAME = "hash({owner}, {key}, {seed})"


class PublishError(RuntimeError):
    """A relation that breaks its audience's policy, or a snapshot that cannot be written."""


@dataclass(frozen=True)
class Relation:
    """One published relation: its audience, schema, name and the SQL that selects it."""

    audience: str
    schema: str
    name: str
    sql: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class PublishResult:
    """What one publish wrote, for the merge summary and the logs."""

    version: str
    analyst_rows: dict[str, int] = field(default_factory=dict)
    analyst_unchanged: bool = False
    communities_published: int = 0
    communities_unchanged: int = 0
    parts_written: int = 0
    parts_linked: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    # "<audience> <schema.name>" -> seconds to build, check and write it (all communities together)
    relation_seconds: dict[str, float] = field(default_factory=dict)
    serving: str | None = None
    access_log: str | None = None  # why the publish record could not be written, if it could not
    unopened: list[str] = field(default_factory=list)  # communities published for the pipeline alone, and why

    def merge(self, other: PublishResult) -> None:
        """Add what another part of the same publish wrote (the communities', on their own thread)."""
        self.communities_published += other.communities_published
        self.communities_unchanged += other.communities_unchanged
        self.parts_written += other.parts_written
        self.parts_linked += other.parts_linked
        self.seconds.update(other.seconds)
        self.relation_seconds.update(other.relation_seconds)
        self.unopened += other.unopened

    def summary(self) -> str:
        analyst = "unchanged" if self.analyst_unchanged else f"{sum(self.analyst_rows.values()):,} rows"
        return (f"published {self.version}: analyst {analyst} ({len(self.analyst_rows)} relations); "
                f"communities {self.communities_published} new, {self.communities_unchanged} unchanged; "
                f"{self.parts_written:,} parts written, {self.parts_linked:,} unchanged (linked); "
                f"{sum(self.seconds.values()):.1f} s{slowest(self.relation_seconds)}"
                + (f"; serving: {self.serving}" if self.serving else "")
                + (f"; ACCESS LOG NOT RECORDED: {self.access_log}" if self.access_log else "")
                + "".join(f"; NOT READABLE BY ITS STAFF: {why}" for why in self.unopened))


def slowest(seconds: dict[str, float], count: int = 3) -> str:
    """' (slowest: a 1.5 s, b 1.2 s, ...)' for a summary line: where a publish's time went."""
    top = sorted(seconds.items(), key=lambda item: -item[1])[:count]
    return f" (slowest: {', '.join(f'{name} {s:.1f} s' for name, s in top)})" if top else ""


def policy() -> dict:
    """The audiences' declared checks (policy.toml)."""
    return tomllib.loads((POLICY_DIR / "policy.toml").read_text(encoding="utf-8"))


def relations(audience: str) -> list[Relation]:
    """The relations an audience gets, from its folder of SQL files, in name order."""
    if audience not in AUDIENCES:
        raise PublishError(f"unknown audience {audience!r}; one of {', '.join(AUDIENCES)}")
    found = []
    for path in sorted((POLICY_DIR / audience).glob("*.sql")):
        schema, _, name = path.stem.partition(".")
        if not (_IDENT.match(schema) and _IDENT.match(name)):
            raise PublishError(f"{path}: name it <schema>.<name>.sql in lower case")
        found.append(Relation(audience, schema, name, path.read_text(encoding="utf-8")))
    return found


def new_version(run_id: str | None = None) -> str:
    """A version name that sorts by time: UTC instant, then the merge run it came from."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return stamp + (f"-{safe_name(run_id, max_length=60)}" if run_id else "")


def community_folder(code: str) -> str:
    """The folder of a community's snapshots: its code when that is a safe name, else a safe form + hash."""
    folder = safe_name(code)
    if folder != code:
        folder = f"{folder}_{hashlib.sha256(code.encode()).hexdigest()[:8]}"
    return folder


def relation_files(version_dir: Path, manifest: dict, qualified: str) -> list[Path]:
    """The data files of one relation of a version, from its manifest (the columns file excluded)."""
    folder = version_dir / "parquet" / f"{qualified}.parquet"
    return [folder / f for part in manifest["relations"][qualified]["parts"].values() for f in part["files"]]


def publish(con: duckdb.DuckDBPyConnection, root: Path, version: str,
            analyst_ready: Callable[[], None] | None = None,
            community_ready: Callable[[], None] | None = None) -> PublishResult:
    """Publish every audience's relations from the warehouse behind `con` (its committed state)
    under `root`. `analyst_ready` is called once the analysts' version is in place and
    `community_ready` once every community's is, each while the other audience may still be written
    (on the thread that wrote it)."""
    result = PublishResult(version)
    _prepare(con)
    with private_umask():
        root.mkdir(parents=True, exist_ok=True, mode=0o750)
        permissions.prepare_root(root)
        _remove_leftovers(root)
        # The two audiences side by side, the communities' on a connection of their own: much of a
        # publish is single-threaded (small statements, file writes, links, the serving database's
        # waits), so the other audience uses the core one leaves idle (issue #13). The merge has
        # committed: both read the same warehouse state.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish-community") as pool:
            community = pool.submit(_publish_communities_on, con.cursor(), root / "community", version,
                                    community_ready)
            try:
                started = time.perf_counter()
                _publish_analyst(con, root / "analyst", version, result)
                result.seconds["analyst"] = time.perf_counter() - started
                if analyst_ready is not None:
                    analyst_ready()
            except BaseException:
                wait([community])  # never leave it writing behind a failed publish; this error is the one raised
                raise
            result.merge(community.result())
    started = time.perf_counter()
    _remove_unheld(root)
    result.seconds["cleanup"] = time.perf_counter() - started
    return result


def _publish_communities_on(cursor: duckdb.DuckDBPyConnection, root: Path, version: str,
                            ready: Callable[[], None] | None) -> PublishResult:
    """_publish_communities on a connection of its own (a cursor of the warehouse's), timed."""
    result = PublishResult("")
    try:
        _prepare(cursor)
        started = time.perf_counter()
        _publish_communities(cursor, root, version, result)
        result.seconds["community"] = time.perf_counter() - started
    finally:
        cursor.close()
    if ready is not None:
        ready()
    return result


def _remove_unheld(root: Path) -> None:
    """Older versions go once no reader holds them: moved aside now, deleted in the background
    (see snapshot.remove_old_versions)."""
    from warehouse.publish.snapshot import delete_in_background, remove_old_versions

    trash = root / ".trash"
    remove_old_versions(root / "analyst", trash)
    remove_old_versions(root / DISTRICT_COPY, trash)
    community = root / "community"
    if community.is_dir():
        for folder in community.iterdir():
            if folder.is_dir() and not folder.name.startswith("."):
                remove_old_versions(folder, trash)
    delete_in_background(trash)


def _remove_leftovers(root: Path) -> None:
    """Half-written versions of a publish that was killed: publishing holds the warehouse's write
    lock, so no other publish is writing them; readers never see them (they follow `current`)."""
    for pattern in ("analyst/versions/.*.tmp", "analyst/.staging-*", "community/.staging-*",
                    "community/*/versions/.*.tmp", f"{DISTRICT_COPY}/versions/.*.tmp"):
        for path in root.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def _refresh(con: duckdb.DuckDBPyConnection, rules: dict) -> Refresh:
    """What policy.toml's [refresh] relations would be built from now (warehouse/publish/refresh.py)."""
    return Refresh(con, listed(policy()), _checks_digest(rules), (POLICY_DIR / "macros.sql").read_text(encoding="utf-8"))


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    pseudonym.set_hmac_variables(con)
    con.execute((POLICY_DIR / "macros.sql").read_text(encoding="utf-8"))


# --- checks ----------------------------------------------------------------------------------------

def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.execute(f"select column_name, column_type from (describe {table})").fetchall()]


def _check(con: duckdb.DuckDBPyConnection, columns: list[tuple[str, str]], scope: str, relation: Relation,
           rules: dict) -> None:
    """Enforce the audience's declared checks: the column names on the relation, the value checks on
    `scope` (the relation, or the rows of its parts written by this publish)."""
    names = {c for c, _ in columns}
    forbidden = set(rules.get("forbidden_columns", [])) & names
    if forbidden:
        raise PublishError(f"{relation.audience} {relation.qualified}: policy forbids the columns "
                           f"{', '.join(sorted(forbidden))}; remove them from {relation.audience}/"
                           f"{relation.qualified}.sql")
    pseudonyms = [c for c, _ in columns if c in rules.get("pseudonym_columns", [])]
    for c in pseudonyms:
        row = con.execute(f"select count(*) from {scope} where \"{c}\" is not null "
                          f"and not regexp_full_match(\"{c}\", '[0-9a-f]{{64}}')").fetchone()
        if row and row[0]:
            raise PublishError(f"{relation.audience} {relation.qualified}: {row[0]:,} values of {c} are not "
                               f"HMAC pseudonyms; use onenet_pseudonym() in {relation.audience}/{relation.qualified}.sql")
    text = [c for c, t in columns if (t == "VARCHAR" or t == "VARCHAR[]") and c not in pseudonyms]
    if rules.get("scan_values") and text:
        # Any value shaped like an ID or a mobile, in any text column, tested once per distinct
        # combination of the text columns: codes and names repeat on most rows (mart.grid_daily:
        # ~900k rows, ~30k combinations), and the regular expressions cost more than the grouping.
        # Then each distinct value once, whichever column holds it (a ticket's id and text are on
        # every row of a combination of their own; its codes and names are shared): 0.7x the CPU of
        # testing each column of each combination (1.3M district, issue #13). Only a relation that
        # fails is scanned again, per column, to name where the values are.
        quoted = [f'"{c}"' for c in text]
        combinations = "(select distinct " + ", ".join(f"cast({q} as varchar) as {q}" for q in quoted) + f" from {scope})"

        def shaped(value: str) -> str:
            return f"regexp_matches({value}, '{ID_SHAPED}') or regexp_matches({value}, '{PHONE_SHAPED}')"

        row = con.execute(f"select count(*) filter (where {shaped('v')}) from "
                          f"(select distinct unnest([{', '.join(quoted)}]) as v from {combinations})").fetchone()
        if row and row[0]:
            probes = ", ".join(f"count(*) filter (where {shaped(q)})" for q in quoted)
            counts = con.execute(f"select {probes} from {combinations}").fetchone() or ()
            leaking = [f"{c} ({n:,} distinct rows)" for c, n in zip(text, counts, strict=True) if n]
            raise PublishError(f"{relation.audience} {relation.qualified}: values shaped like an ID or phone "
                               f"number in {', '.join(leaking)}; scrub or drop them in "
                               f"{relation.audience}/{relation.qualified}.sql")
    for c in rules.get("masked_columns", []):
        if c in names:
            row = con.execute(f"select count(*) from {scope} where \"{c}\" is not null and "
                              f"not regexp_full_match(\"{c}\", '[0-9A-Za-z]{{0,6}}[*]+[0-9Xx]{{0,4}}|[*]*')").fetchone()
            if row and row[0]:
                raise PublishError(f"{relation.audience} {relation.qualified}: {row[0]:,} values of {c} are not "
                                   f"masked; wrap it in onenet_mask_id() in {relation.audience}/{relation.qualified}.sql")


# --- parts: what changed, written once, linked otherwise --------------------------------------------

@dataclass
class _Staged:
    """One relation built and split in parts; the changed parts' files are in `folder`."""

    relation: Relation
    columns: list[tuple[str, str]]
    partition: Partition | None
    # owner (community code, or None) -> part key -> (part name, hash, rows)
    parts: dict[str | None, dict[str, tuple[str, str, int]]]
    changed: set[str]       # part names written by this publish
    folder: Path            # staging/<relation>/ : _part=<name>/*.parquet, and columns.parquet
    checked: str            # the checks its parts passed (_checks_digest)


# How a [partitions] entry may cut a date column: one part per value, or per week or month (the
# Monday or the first of the month that starts it, as YYYY-MM-DD).
BUCKETS = ("week", "month")


@dataclass(frozen=True)
class Partition:
    """A relation's [partitions] entry: the column whose values split it, and an optional bucket."""

    column: str
    every: str | None = None

    @classmethod
    def of(cls, spec: str | dict | None, qualified: str) -> Partition | None:
        """`"day_on"` (a part per value) or `{ column = "day_on", every = "week" }`."""
        if spec is None:
            return None
        if isinstance(spec, str):
            return cls(spec)
        every = spec.get("every")
        if not isinstance(spec.get("column"), str) or every not in (None, *BUCKETS) or set(spec) - {"column", "every"}:
            raise ValueError(f"policy.toml [partitions] {qualified}: give a column name, or "
                             f"{{ column = \"…\", every = \"week\" or \"month\" }}; found {spec!r}")
        return cls(spec["column"], every)

    def key_sql(self) -> str:
        value = f'"{self.column}"'
        if self.every:
            value = f"strftime(date_trunc('{self.every}', {value}), '%Y-%m-%d')"
        return f"coalesce(cast({value} as varchar), '{_NULL_KEY}')"


def _stage(con: duckdb.DuckDBPyConnection, table: str, rel: Relation, owner_column: str | None,
           partition: Partition | None, previous: dict[str | None, tuple[dict | None, Path | None]], staging: Path,
           rules: dict) -> _Staged:
    """Split the built relation `table` in parts (per owner, per partition value), compare each part's
    content hash with the owner's current version, check and write only the parts that changed."""
    columns = _columns(con, table)
    names = {c for c, _ in columns}
    requested_owner = owner_column is not None
    if owner_column and owner_column not in names:
        owner_column = None  # the same for every community (e.g. source freshness)
    if partition and partition.column not in names:
        partition = None
    if partition and partition.every and dict(columns)[partition.column] not in ("DATE", "TIMESTAMP"):
        # A week of a TIMESTAMP WITH TIME ZONE would depend on the session's zone; of text, on nothing.
        raise PublishError(f"{rel.qualified}: policy.toml [partitions] cuts {partition.column!r} by "
                           f"{partition.every}, but it is {dict(columns)[partition.column]}; give a DATE column "
                           "(e.g. the Beijing day) or drop `every`")
    owner = f"\"{owner_column}\"" if owner_column else "null::varchar"
    key = partition.key_sql() if partition else "''"
    parts, part_name = _parts(con, table, owner, key, rel)
    changed: set[str] = set()
    shape = [list(c) for c in columns]
    checked = _checks_digest(rules)
    if owner_column is None and requested_owner:
        # The same rows for every community (small by nature): always written once, linked into each,
        # since communities' current versions may differ.
        changed = {name for owned in parts.values() for name, _, _ in owned.values()}
    for o, owned in parts.items() if not changed else ():
        prev_entry = _previous_entry(previous, rel.qualified, o)
        for k, (name, digest, _n) in owned.items():
            same = prev_entry and prev_entry.get("shape") == shape and prev_entry.get("checked") == checked
            old = prev_entry["parts"].get(k) if same and prev_entry else None
            if not old or old.get("hash") != digest:
                changed.add(name)
    folder = staging / rel.qualified
    folder.mkdir(parents=True, mode=0o750)
    con.execute(f"copy (select * from {table} limit 0) to '{folder / COLUMNS_FILE}' (format parquet)")
    if changed:
        everything = len(changed) == sum(len(owned) for owned in parts.values())
        scope = table
        if not everything:
            # The changed parts' rows, once: the checks read them a column at a time.
            con.execute("create or replace temp table onenet_pub_changed as select unnest(?::ubigint[]) as p",
                        [sorted(int(name) for name in changed)])
            scope = f"{table}_changed"
            con.execute(f"create or replace temp table {scope} as select * from {table} "
                        f"where {part_name} in (select p from onenet_pub_changed)")
        _check(con, columns, scope, rel, rules)
        con.execute(f"copy (select *, {part_name} as _part from {scope}) to '{folder}' "
                    "(format parquet, partition_by (_part), write_partition_columns false, overwrite_or_ignore)")
        if not everything:
            con.execute(f"drop table {scope}")
    else:
        _check(con, columns, f"(select * from {table} limit 0)", rel, rules)  # the names still
    return _Staged(rel, columns, partition, parts, changed, folder, checked)


def _parts(con: duckdb.DuckDBPyConnection, table: str, owner: str, key: str,
           rel: Relation) -> tuple[dict[str | None, dict[str, tuple[str, str, int]]], str]:
    """The parts of the built relation `table`: owner -> part key -> (part name, content hash, rows),
    and the SQL of a row's part name. A name is the 64-bit hash of the owner and the key, which costs
    a third of an md5 per row (1.3M district, issue #13); names that collide (about 2^-64 per pair)
    are drawn again with another seed."""
    for seed in range(3):
        part_name = PART_NAME.format(owner=owner, key=key, seed=seed)
        rows = con.execute(f"select {owner}, {key}, {part_name}, sum(hash(t))::varchar, count(*) from {table} t "
                           "group by all").fetchall()
        if len({name for _, _, name, _, _ in rows}) == len(rows):
            parts: dict[str | None, dict[str, tuple[str, str, int]]] = {}
            for o, k, name, digest, n in rows:
                parts.setdefault(o, {})[k] = (str(name), digest, int(n))
            return parts, part_name
    raise PublishError(f"{rel.audience} {rel.qualified}: part names collide under three seeds; report this")


def _stage_district(con: duckdb.DuckDBPyConnection, table: str, staged: _Staged, key: str, codes: list[str],
                    previous: tuple[dict | None, Path | None], staging: Path) -> _Staged:
    """A community relation's rows of every community in `codes` as one part of the district copy,
    from its staged community parts: its hash is the sum of theirs (the same sum of row hashes), and
    its file is written only when one of them changed. Its rows are those parts' rows, each checked
    when its part was written: they are not checked again."""
    rel = staged.relation
    owned = [staged.parts.get(code, {}).get("") for code in codes]
    digest = str(sum(int(part[1]) for part in owned if part))
    rows = sum(part[2] for part in owned if part)
    name = hashlib.md5(f"{_NULL_KEY}|".encode()).hexdigest()
    entry = (previous[0] or {}).get("relations", {}).get(rel.qualified)
    same = bool(entry and entry.get("shape") == [list(c) for c in staged.columns]
                and entry.get("checked") == staged.checked and entry["parts"].get("", {}).get("hash") == digest)
    folder = staging / rel.qualified
    folder.mkdir(parents=True, mode=0o750)
    os.link(staged.folder / COLUMNS_FILE, folder / COLUMNS_FILE)
    if not same:
        (folder / f"_part={name}").mkdir(mode=0o750)
        # Only the communities published: a row of any other would have no login to see it.
        con.execute(f"copy (select * from {table} where \"{key}\" in (select unnest(?::varchar[]))) "
                    f"to '{folder / f'_part={name}' / 'data_0.parquet'}' (format parquet)", [codes])
    return _Staged(rel, staged.columns, None, {None: {"": (name, digest, rows)}}, set() if same else {name},
                   folder, staged.checked)


def _checks_digest(rules: dict) -> str:
    """What a part's values were checked against: a part checked under other rules (or patterns) is
    written and checked again, never linked."""
    text = json.dumps([rules, ID_SHAPED, PHONE_SHAPED], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _previous_entry(previous: dict[str | None, tuple[dict | None, Path | None]], qualified: str,
                    owner: str | None) -> dict | None:
    manifest, _ = previous.get(owner, (None, None))
    return (manifest or {}).get("relations", {}).get(qualified)


def _file_stem(key: str) -> str:
    safe = safe_name(key, max_length=40) if key else "all"
    return safe if safe == key or not key else f"{safe}_{hashlib.md5(key.encode()).hexdigest()[:8]}"


def _assemble(staged: _Staged, owner: str | None, shared: bool, target: Path, previous: tuple[dict | None, Path | None],
              result: PublishResult, linker: Callable[[Path, Path], None] = os.link) -> dict:
    """Fill `target` (a version's parquet/) with one relation's parts for `owner`: changed parts from
    staging, unchanged ones linked from the previous version; return the manifest entry."""
    rel = staged.relation
    folder = target / f"{rel.qualified}.parquet"
    folder.mkdir(mode=0o750)
    linker(staged.folder / COLUMNS_FILE, folder / COLUMNS_FILE)
    owned = staged.parts.get(None if shared else owner, {})
    prev_manifest, prev_dir = previous
    prev_entry = (prev_manifest or {}).get("relations", {}).get(rel.qualified)
    entry_parts: dict[str, dict] = {}
    for key in sorted(owned):
        name, digest, rows = owned[key]
        stem = _file_stem(key)
        if name in staged.changed:
            written = sorted((staged.folder / f"_part={name}").glob("*.parquet"))
            files = []
            for i, path in enumerate(written):
                files.append(f"{stem}-{i}.parquet")
                if shared and permissions.enabled():  # each community's copy gets its own group
                    shutil.copyfile(path, folder / files[-1])
                elif shared:  # the same file in every community's version
                    linker(path, folder / files[-1])
                else:
                    os.replace(path, folder / files[-1])
            result.parts_written += 1
        else:
            assert prev_entry is not None and prev_dir is not None
            files = prev_entry["parts"][key]["files"]
            for f in files:
                linker(prev_dir / "parquet" / f"{rel.qualified}.parquet" / f, folder / f)
            result.parts_linked += 1
        entry_parts[key] = {"hash": digest, "rows": rows, "files": files}
    rows_total = sum(p["rows"] for p in entry_parts.values())
    digest = hashlib.sha256(json.dumps({k: p["hash"] for k, p in entry_parts.items()}, sort_keys=True)
                            .encode()).hexdigest()[:32]
    return {"rows": rows_total, "columns": [c for c, _ in staged.columns], "shape": [list(c) for c in staged.columns],
            "checked": staged.checked, "hash": digest, "parts": entry_parts,
            "partition": staged.partition.column if staged.partition else None,
            **({"every": staged.partition.every} if staged.partition and staged.partition.every else {})}



# --- atomic versions -------------------------------------------------------------------------------

def _current(audience_dir: Path) -> tuple[dict | None, Path | None]:
    """The current version's manifest and folder (None, None when there is none or it is unreadable)."""
    try:
        folder = (audience_dir / "current").resolve(strict=True)
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8")), folder
    except (OSError, ValueError):
        return None, None


def _install(audience_dir: Path, tmp: Path, version: str, manifest: dict,
             finish: Callable[[Path], None] | None = None) -> Path:
    """Move a fully written version into place and point `current` at it, atomically.

    `finish` completes the version at its final path before anyone is pointed at it (the analysts'
    views file names its Parquet files by absolute path).
    """
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    final = audience_dir / "versions" / version
    os.replace(tmp, final)
    if finish:
        finish(final)
    (final / ".readers").touch()  # readers hold a shared lock on it (snapshot.py)
    link = audience_dir / f".current-{os.getpid()}"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path("versions") / version)
    current = audience_dir / "current"
    if current.is_dir() and not current.is_symlink():  # a copy that followed the link (cp -r): not ours
        shutil.rmtree(current)
    os.replace(link, current)  # rename(2) of a symlink: readers see old or new
    _fsync_dir(audience_dir)
    return final


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_dir(audience_dir: Path, version: str) -> Path:
    tmp = audience_dir / "versions" / f".{version}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, mode=0o750)
    (tmp / "parquet").mkdir(mode=0o750)
    return tmp


def _build(con: duckdb.DuckDBPyConnection, rel: Relation) -> str:
    table = f"onenet_pub_{rel.audience}_{rel.schema}_{rel.name}"
    try:
        con.execute(f"create or replace temp table {table} as {rel.sql}")
    except duckdb.Error as exc:
        raise PublishError(f"{rel.audience} {rel.qualified}: the policy SQL failed ({exc})") from exc
    return table


# --- analysts --------------------------------------------------------------------------------------

def _publish_analyst(con: duckdb.DuckDBPyConnection, audience_dir: Path, version: str,
                     result: PublishResult) -> None:
    rules = policy()["analyst"]
    partitions = policy().get("partitions", {})
    previous = _current(audience_dir)
    permissions.audience_folder(audience_dir, "analyst")
    staging = audience_dir / f".staging-{version}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True, mode=0o750)
    (audience_dir / "versions").mkdir(mode=0o750, exist_ok=True)
    rels = relations("analyst")
    refresh = _refresh(con, rules)
    manifest: dict = {"version": version, "audience": "analyst", "relations": {}, "refresh": refresh.records(rels)}
    tmp = _tmp_dir(audience_dir, version)
    try:
        for rel in rels:
            if refresh.carried(rel, rels, [previous[0]]):  # policy.toml [refresh]: built from the same
                manifest["relations"][rel.qualified] = carry_over(rel.qualified, previous, tmp / "parquet", result)
                result.analyst_rows[rel.qualified] = manifest["relations"][rel.qualified]["rows"]
                continue
            started = time.perf_counter()
            table = _build(con, rel)
            staged = _stage(con, table, rel, None, Partition.of(partitions.get(rel.qualified), rel.qualified), {None: previous}, staging, rules)
            con.execute(f"drop table {table}")
            entry = _assemble(staged, None, False, tmp / "parquet", previous, result)
            manifest["relations"][rel.qualified] = entry
            result.analyst_rows[rel.qualified] = entry["rows"]
            result.relation_seconds[f"analyst {rel.qualified}"] = time.perf_counter() - started
        current = previous[0]
        result.analyst_unchanged = bool(current and current.get("relations") == manifest["relations"]
                                        and current.get("refresh", {}) == manifest["refresh"])
        if result.analyst_unchanged:
            shutil.rmtree(tmp)  # nothing changed: readers keep the version they have
            return
        permissions.seal(tmp, "analyst")
        _install(audience_dir, tmp, version, manifest, lambda final: _write_views(final, manifest))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_views(version_dir: Path, manifest: dict) -> None:
    """The analysts' DuckDB file: one view per relation over its Parquet files (at their final path),
    for tools that open a file; onenet's own readers build these views in memory (snapshot.py)."""
    con = duckdb.connect(str(version_dir / "snapshot.duckdb"))
    try:
        for qualified in manifest["relations"]:
            schema = qualified.split(".")[0]
            glob = str(version_dir / "parquet" / f"{qualified}.parquet" / "*.parquet").replace("'", "''")
            con.execute(f"create schema if not exists {schema}")
            con.execute(f"create view {qualified} as select * from read_parquet('{glob}')")
    finally:
        con.close()


# --- communities -----------------------------------------------------------------------------------

def _publish_communities(con: duckdb.DuckDBPyConnection, root: Path, version: str, result: PublishResult) -> None:
    rules = policy()["community"]
    partitions = policy().get("partitions", {})
    key = rules.get("partition_by", "community_code")
    communities = con.execute(
        "select community_code, any_value(community_name) from core.grid where grid_level = 'community' "
        "and community_code is not null group by 1 order by 1").fetchall()
    staging = root / f".staging-{version}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True, mode=0o750)
    previous: dict[str | None, tuple[dict | None, Path | None]] = {
        code: _current(root / community_folder(code)) for code, _ in communities}
    district_previous = _current(root.parent / DISTRICT_COPY)
    rels = relations("community")
    refresh = _refresh(con, rules)
    carried: list[str] = []
    staged: list[_Staged] = []
    whole: list[_Staged] = []  # the district copy's
    shared: list[str] = []
    codes = [code for code, _ in communities]
    try:
        for rel in rels:
            partition = Partition.of(partitions.get(rel.qualified), rel.qualified)
            # A relation cut in periods stays out of the district copy: each period would be written
            # twice a day (its communities' parts and its district part); the serving database reads
            # its communities' parts.
            copies = [previous[code][0] for code in codes] + ([district_previous[0]] if partition is None else [])
            if refresh.carried(rel, rels, copies):
                carried.append(rel.qualified)  # policy.toml [refresh]: built from the same, linked below
                continue
            started = time.perf_counter()
            table = _build(con, rel)
            s = _stage(con, table, rel, key, partition, previous, staging, rules)
            staged.append(s)
            if key not in {c for c, _ in s.columns}:
                shared.append(rel.qualified)
            elif s.partition is None:
                whole.append(_stage_district(con, table, s, key, codes, district_previous, staging / DISTRICT_COPY))
            con.execute(f"drop table {table}")
            result.relation_seconds[f"community {rel.qualified}"] = time.perf_counter() - started
        _install_district_copy(root.parent / DISTRICT_COPY, version, whole,
                               [q for q in carried if q not in partitions], district_previous, refresh.records(rels))
        index = {}
        for code, name in communities:
            folder = community_folder(code)
            index[code] = {"name": name, "folder": folder}
            community_dir = root / folder
            missing = permissions.audience_folder(community_dir, "community", code)
            if missing:
                log.warning("publish: %s", missing)
                result.unopened.append(missing)
            (community_dir / "versions").mkdir(parents=True, mode=0o750, exist_ok=True)
            prev_manifest, _ = previous[code]
            tmp = _tmp_dir(community_dir, version)
            manifest = {"version": version, "audience": "community", "community_code": code,
                        "community_name": name, "relations": {}, "shared": sorted(shared),
                        "refresh": refresh.records(rels)}
            _fill_community(staged, code, shared, tmp, previous[code], manifest, result)
            for qualified in carried:
                manifest["relations"][qualified] = carry_over(qualified, previous[code], tmp / "parquet", result)
            if prev_manifest and prev_manifest.get("relations") == manifest["relations"] \
                    and prev_manifest.get("community_name") == name \
                    and prev_manifest.get("refresh", {}) == manifest["refresh"]:
                shutil.rmtree(tmp)
                result.communities_unchanged += 1
                continue
            permissions.seal(tmp, "community", code)
            _install(community_dir, tmp, version, manifest)
            result.communities_published += 1
        _write_index(root, index)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _install_district_copy(folder: Path, version: str, whole: list[_Staged], carried: list[str],
                           previous: tuple[dict | None, Path | None], refresh: dict) -> None:
    """The communities' relations for the whole district (DISTRICT_COPY), for the serving database:
    the changed ones written, the others and the [refresh] relations carried linked from the last copy."""
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)  # neither an audience's group nor anyone else: every community's rows
    (folder / "versions").mkdir(mode=0o700, exist_ok=True)
    tmp = _tmp_dir(folder, version)
    counts = PublishResult("")  # its parts are not the snapshots' (the summary counts those)
    manifest: dict = {"version": version, "audience": "community", "district_copy": True, "relations": {},
                      "refresh": refresh}
    try:
        for s in whole:
            manifest["relations"][s.relation.qualified] = _assemble(s, None, False, tmp / "parquet", previous, counts)
        for qualified in carried:
            manifest["relations"][qualified] = carry_over(qualified, previous, tmp / "parquet", counts)
        if previous[0] and previous[0].get("relations") == manifest["relations"] \
                and previous[0].get("refresh", {}) == refresh:
            shutil.rmtree(tmp)
            return
        _install(folder, tmp, version, manifest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fill_community(staged: list[_Staged], code: str, shared: list[str], tmp: Path,
                    previous: tuple[dict | None, Path | None], manifest: dict, result: PublishResult) -> None:
    """A community's new version folder: each relation's parts, written or linked."""
    for s in staged:
        shared_rel = s.relation.qualified in shared
        manifest["relations"][s.relation.qualified] = _assemble(s, code, shared_rel, tmp / "parquet", previous, result)


def _write_index(root: Path, index: dict) -> None:
    tmp = root / f".communities-{os.getpid()}.json"
    tmp.write_text(json.dumps(index, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, root / "communities.json")
    permissions.shared_file(root / "communities.json")
