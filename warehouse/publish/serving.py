"""The serving database: published relations loaded into PostgreSQL with logins, grants, row-level security and statement logging."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import duckdb
import psycopg
from duckdb.sqltypes import DuckDBPyType
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

ADMIN_SCHEMA = "serving_admin"  # what was published, and the login -> community mapping; no audience role reads it
STAGE_SCHEMA = "serving_stage"  # new tables are loaded here, then moved into place in one transaction
ANALYST_SCHEMA = "analyst"
COMMUNITY_SCHEMA = "community"
# Part of every content hash: bump it when the type mapping or the load changes, and every relation republishes.
LOAD_FORMAT = "serving-1"
# pg_advisory_lock keys: publishers into one database take turns setting up roles and grants
# (_LOCK_KEY), and loading one audience's schema (its own key), so the analysts' tables and the
# communities' can load side by side (issue #13).
_LOCK_KEY = 0x6F6E656E6574  # "onenet"
_SCHEMA_LOCK_KEYS = {ANALYST_SCHEMA: _LOCK_KEY + 1, COMMUNITY_SCHEMA: _LOCK_KEY + 2}
# Stage tables carry their audience's letter, so one audience's publish clears only its own leftovers.
_STAGE_PREFIX = {ANALYST_SCHEMA: "a", COMMUNITY_SCHEMA: "c"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CODE = re.compile(r"^[A-Za-z0-9_]+$")
_PG_NAME_BYTES = 63
# A relation given in parts is loaded part by part when its changed parts hold at most this share of its rows.
INCREMENTAL_SHARE = 0.5
# A relation is loaded by changed rows (delete their old copies, insert the new) when the rows to
# delete and insert are at most this share of its rows: past that, a whole reload costs less. At 1M
# rows (bench/serving_load.py --next-day) moving 4% took 0.51 of the whole load's CPU (ours and
# PostgreSQL's), moving 25% took 1.07: even at about 20%, kept below for the vacuum it leaves.
ROWS_SHARE = 0.15
# PostgreSQL types a changed row is matched on before its whole text is compared: cheap to hash.
_KEY_TYPES = ("text", "bigint", "integer", "smallint", "date", "timestamptz", "timestamp", "uuid", "numeric",
              "double precision", "real", "time", "boolean")
log = logging.getLogger(__name__)


class ServingError(RuntimeError):
    """Publishing to the serving database failed; the message names the relation and what to do."""


class ServingInputError(ServingError):
    """The published files cannot be served as given (name clash, missing file, unknown community)."""


class ServingBusy(ServingError):
    """Readers held a served table longer than the lock timeout; nothing was swapped."""


@dataclass
class ServingResult:
    """What one publish did: rows per relation (`analyst.<name>`, `community.<name>`), which were replaced,
    which were skipped as unchanged, which were dropped as no longer published, and the seconds taken."""

    version: str
    rows: dict[str, int] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    incremental: list[str] = field(default_factory=list)  # of `published`: only changed parts or rows loaded
    skipped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    relation_seconds: dict[str, float] = field(default_factory=dict)  # to hash, diff and stage each; "swap"


@dataclass(frozen=True)
class Part:
    """Part of a published relation, as its snapshot's manifest records it: the column values its rows
    share (community_code, a day), their content hash (computed when they were published), row count
    and files. A served relation given in parts is loaded part by part: only the parts whose hash
    changed are deleted and inserted again, inside the swap transaction."""

    where: tuple[tuple[str, str | None], ...]
    hash: str
    rows: int
    files: tuple[Path, ...]


@dataclass(frozen=True)
class _Relation:
    schema: str  # ANALYST_SCHEMA or COMMUNITY_SCHEMA
    name: str
    files: tuple[Path, ...]
    parts: Mapping[str, Part] | None = None

    @property
    def key(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class _Grantees:
    analyst: str  # the analyst login
    community: str  # the group role every community login is a member of


@dataclass(frozen=True)
class _Column:
    name: str
    pg_type: str  # a PostgreSQL type name, built from fixed words only
    expr: str  # the DuckDB expression whose CSV text PostgreSQL's COPY reads as pg_type
    # Distinct DuckDB values stay distinct in PostgreSQL's text of them (not so for JSON, which jsonb
    # normalises, or nanoseconds, which timestamp rounds): only then can changed rows be found in DuckDB.
    exact: bool = True
    floating: bool = False  # DuckDB hashes 0.0 and -0.0 alike; PostgreSQL keeps them apart


def serving_url() -> str | None:
    """The serving database's administrative URL from ONENET_SERVING_URL; None when unset (publishing is skipped)."""
    return os.environ.get("ONENET_SERVING_URL") or None


def password_variable(role: str) -> str:
    """The environment variable that holds `role`'s password, e.g. ONENET_SERVING_PASSWORD_ONENET_ANALYST."""
    return "ONENET_SERVING_PASSWORD_" + role.upper()


def serving_passwords(roles: Sequence[str]) -> dict[str, str]:
    """The passwords set in the environment for `roles`; a role without one is left to an administrator."""
    found = {}
    for role in roles:
        value = os.environ.get(password_variable(role))
        if value:
            found[role] = value
    return found


def audience_roles(communities: Sequence[tuple[str, str]], role_prefix: str = "onenet_") -> dict[str, str]:
    """Login role -> what it reads: `<prefix>analyst` -> 'analyst', `<prefix>community_<code>` -> the code.

    Role names are lower case, so a person can type them unquoted in SQL.
    """
    roles = {f"{role_prefix}analyst".lower(): ANALYST_SCHEMA}
    for code, _name in communities:
        roles[f"{role_prefix}community_{code}".lower()] = code
    return roles


def publish_serving(url: str, version: str, analyst: Mapping[str, Path | Sequence[Path]],
                    community: Mapping[str, Sequence[Path]],
                    communities: Sequence[tuple[str, str]], *, role_prefix: str = "onenet_",
                    passwords: Mapping[str, str] | None = None, lock_timeout_s: float = 5.0,
                    lock_attempts: int = 12, parts: Mapping[tuple[str, str], Mapping[str, Part]] | None = None,
                    keep_dir: Path | None = None,
                    schemas: Sequence[str] = (ANALYST_SCHEMA, COMMUNITY_SCHEMA)) -> ServingResult:
    """Serve the published relations from PostgreSQL at `url` (an administrative login).

    `analyst` maps a relation (`mart.hotline_rates`, or a bare name) to its Parquet file; it becomes
    `analyst.<name>`. `community` maps a relation name to one Parquet file per community, each with a
    `community_code` column; it becomes `community.<name>` holding every community's rows behind
    row-level security. `communities` is [(code, name), ...]. Roles are created idempotently; a
    role's password is set only from `passwords` (default: the ONENET_SERVING_PASSWORD_<ROLE>
    environment variables). A relation whose content hash equals the served one is skipped; the
    changed ones are loaded aside and swapped in one transaction, so a reader sees the old or the
    new version of every relation, never a half. Relations no longer published are dropped. The swap
    waits at most `lock_timeout_s` for readers' queries, `lock_attempts` times, then raises
    ServingBusy and leaves the served version as it was.

    `parts` ((schema, relation) -> part id -> Part, from the snapshots' manifests) lets a relation be
    hashed from its parts' hashes without reading its files, and loaded by changed parts only when its
    served table has the same columns and was loaded in parts before.

    A changed relation is loaded by changed rows when the files it was last served from are still
    there (unchanged) and the rows that differ are few: DuckDB compares the old and new files as
    multisets of rows, and the swap deletes the old copies of the changed rows and inserts their
    new copies. The served files are recorded in serving_admin.published; with `keep_dir`, they are hard
    links kept there (the snapshots' old versions are removed before the serving database is
    loaded), otherwise the given paths themselves.

    `schemas` are the audiences this call serves: with only `analyst`, the community tables, logins
    and their mapping are left as they are (so the analysts' tables can be loaded while the
    community snapshots are still being written; each audience's swap is one transaction).
    """
    started = time.monotonic()
    if not set(schemas) <= {ANALYST_SCHEMA, COMMUNITY_SCHEMA} or not schemas:
        raise ServingInputError(f"schemas {list(schemas)!r}: give {ANALYST_SCHEMA!r}, {COMMUNITY_SCHEMA!r} or both")
    if community and COMMUNITY_SCHEMA not in schemas or analyst and ANALYST_SCHEMA not in schemas:
        raise ServingInputError(f"relations given for an audience outside schemas {list(schemas)!r}")
    relations = _relations(analyst, community, parts or {})
    _check_communities(communities)
    if COMMUNITY_SCHEMA not in schemas:
        communities = []  # their logins and mapping stay as the last community publish left them
    roles = audience_roles(communities, role_prefix)
    group = f"{role_prefix}community".lower()
    for role in [*roles, group]:
        if len(role.encode()) > _PG_NAME_BYTES or not _NAME.match(role):
            raise ServingInputError(f"role name {role!r} is not a plain PostgreSQL name of at most 63 bytes: "
                                    "shorten the role prefix or the community code")
    if passwords is None:
        passwords = serving_passwords(list(roles))
    result = ServingResult(version=version)

    _ensure_database(url)
    duck = duckdb.connect()
    duck.execute("set timezone = 'UTC'")  # timestamptz reach PostgreSQL as UTC instants
    duck.execute("set preserve_insertion_order = false")  # a table has no row order; the export runs faster
    try:
        with psycopg.connect(_conninfo(url), autocommit=True) as pg:
            pg.execute("select pg_advisory_lock(%s)", [_LOCK_KEY])
            try:
                _prepare(pg, roles, group, communities, passwords, logins=COMMUNITY_SCHEMA in schemas,
                         schemas=schemas)
            finally:
                pg.execute("select pg_advisory_unlock(%s)", [_LOCK_KEY])
            locks = [_SCHEMA_LOCK_KEYS[s] for s in sorted(schemas)]  # one order: no deadlock
            for key in locks:
                pg.execute("select pg_advisory_lock(%s)", [key])
            try:
                kept = Path(keep_dir) / _database(url) if keep_dir is not None else None
                if kept is not None:  # what any audience may read, together: only the publisher enters
                    kept.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                    kept.mkdir(mode=0o700, exist_ok=True)
                _publish(pg, duck, relations, version, _Grantees(f"{role_prefix}analyst".lower(), group), result,
                         lock_timeout_s, lock_attempts, kept, schemas)
                if kept is not None:
                    _tidy_kept(pg, kept, schemas)
            finally:
                for key in reversed(locks):
                    pg.execute("select pg_advisory_unlock(%s)", [key])
    finally:
        duck.close()
    result.seconds = round(time.monotonic() - started, 3)
    return result


# --- inputs -------------------------------------------------------------------------------------

def _relations(analyst: Mapping[str, Path | Sequence[Path]], community: Mapping[str, Sequence[Path]],
               parts: Mapping[tuple[str, str], Mapping[str, Part]]) -> list[_Relation]:
    out: list[_Relation] = []
    inputs: list[tuple[str, str, tuple[Path, ...]]] = [
        (ANALYST_SCHEMA, key, (Path(path),) if isinstance(path, str | Path) else tuple(Path(p) for p in path))
        for key, path in sorted(analyst.items())]
    inputs += [(COMMUNITY_SCHEMA, key, tuple(Path(p) for p in paths)) for key, paths in sorted(community.items())]
    seen: dict[tuple[str, str], str] = {}
    for schema, key, files in inputs:
        name = _table_name(key, key.rsplit(".", 1)[-1])
        if (schema, name) in seen:
            raise ServingInputError(f"{schema} relations {seen[schema, name]!r} and {key!r} would both be served as "
                                    f"{schema}.{name}: rename one of them in warehouse/publish/")
        seen[schema, name] = key
        given = parts.get((schema, key))
        if not files:
            raise ServingInputError(f"community relation {key!r} has no files: publish at least one community's "
                                    "file (it may hold zero rows) so its columns are known")
        out.append(_Relation(schema, name, files, given))
    for rel in out:
        for path in rel.files:
            if not path.is_file():
                raise ServingInputError(f"{rel.key}: file {path} does not exist; publish the snapshot first")
    return out


def _table_name(key: str, name: str) -> str:
    if not _NAME.match(name) or len(name.encode()) > _PG_NAME_BYTES:
        raise ServingInputError(f"relation {key!r}: {name!r} is not a plain table name (letters, digits, "
                                "underscore; at most 63 bytes)")
    return name


def _check_communities(communities: Sequence[tuple[str, str]]) -> None:
    codes = [code for code, _name in communities]
    for code in codes:
        if not _CODE.match(code):
            raise ServingInputError(f"community code {code!r} cannot name a login role: only letters, digits "
                                    "and underscore")
    if len({code.lower() for code in codes}) != len(codes):
        raise ServingInputError(f"community codes repeat in {codes} (ignoring case): each community needs its "
                                "own code, and its own login role")


# --- roles, schemas, grants -----------------------------------------------------------------------

def _prepare(pg: psycopg.Connection, roles: Mapping[str, str], group: str,
             communities: Sequence[tuple[str, str]], passwords: Mapping[str, str], *, logins: bool = True,
             schemas: Sequence[str] = (ANALYST_SCHEMA, COMMUNITY_SCHEMA)) -> None:
    """Schemas, the admin tables, roles, grants and (with `logins`) the community lookup, all
    idempotent, in one transaction. Grants on tables only in `schemas`: the other audience's
    publish may be swapping its tables meanwhile, and two updates of one catalog row fail."""
    ident = sql.Identifier
    analyst_role = next(r for r, what in roles.items() if what == ANALYST_SCHEMA)
    with pg.transaction():
        database = pg.execute("select current_database()").fetchone()[0]  # type: ignore[index]
        existing = {r[0] for r in pg.execute("select rolname from pg_roles where rolname = any(%s)",
                                             [[*roles, group]])}
        for role in [*roles, group]:
            if role not in existing:
                try:
                    with pg.transaction():  # roles are cluster-wide: another database's publish may create it first
                        pg.execute(sql.SQL("create role {}").format(ident(role)))
                except errors.DuplicateObject:
                    pass
            login = sql.SQL("nologin" if role == group else "login")
            # Re-asserted on every publish: an audience role never bypasses grants or row-level security.
            pg.execute(sql.SQL("alter role {} {} inherit nosuperuser nocreatedb nocreaterole noreplication "
                               "nobypassrls").format(ident(role), login))
        for role, what in roles.items():
            if what != ANALYST_SCHEMA:
                pg.execute(sql.SQL("grant {} to {}").format(ident(group), ident(role)))
            # Every statement of an audience login reaches the server log; only a superuser can turn it off.
            pg.execute(sql.SQL("alter role {} set log_statement = 'all'").format(ident(role)))
            pg.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(ident(role)))
            # Tools list and query the audience's own tables by bare name (select * from hotline_rates).
            pg.execute(sql.SQL("alter role {} set search_path = {}").format(
                ident(role), ident(ANALYST_SCHEMA if what == ANALYST_SCHEMA else COMMUNITY_SCHEMA)))
            if role in passwords:
                # Hashed here (SCRAM), so the clear password is never in a statement or the server log.
                verifier = pg.pgconn.encrypt_password(passwords[role].encode(), role.encode(), b"scram-sha-256")
                pg.execute(sql.SQL("alter role {} password {}").format(ident(role), sql.Literal(verifier.decode())))

        statements = [
            # Nothing is readable or creatable by default in the serving database.
            "revoke all on database {db} from public",
            "grant connect on database {db} to {analyst}, {group}",
            "revoke all on schema public from public",
            "create schema if not exists {admin}",
            "create schema if not exists {stage}",
            "create schema if not exists {analyst_schema}",
            "create schema if not exists {community_schema}",
            "revoke all on schema {admin}, {stage}, {analyst_schema}, {community_schema} from public",
            "grant usage on schema {analyst_schema} to {analyst}",
            "grant usage on schema {community_schema} to {group}",
            *(["grant select on all tables in schema {analyst_schema} to {analyst}",
               "alter default privileges in schema {analyst_schema} grant select on tables to {analyst}"]
              if ANALYST_SCHEMA in schemas else []),
            *(["grant select on all tables in schema {community_schema} to {group}",
               "alter default privileges in schema {community_schema} grant select on tables to {group}"]
              if COMMUNITY_SCHEMA in schemas else []),
            """create table if not exists {admin}.published (
                   schema_name text not null, relation text not null, version text not null,
                   content_hash text not null, rows bigint not null, published_at timestamptz not null,
                   primary key (schema_name, relation))""",
            "alter table {admin}.published add column if not exists shape text",
            # The files the served rows were loaded from (path and identity), to find changed rows next time.
            "alter table {admin}.published add column if not exists files jsonb",
            # Each part's hash as served, for relations loaded in parts (delete + insert of changed parts).
            """create table if not exists {admin}.published_part (
                   schema_name text not null, relation text not null, part text not null,
                   content_hash text not null, rows bigint not null, part_where jsonb not null,
                   primary key (schema_name, relation, part))""",
            """create table if not exists {admin}.community_login (
                   role_name text primary key, community_code text not null unique, community_name text)""",
            # The community of the *login* (session_user): SET ROLE, SET of a setting or a role granted
            # later cannot change it. Security definer so the policy can read a table its users cannot.
            """create or replace function {community_schema}.login_community() returns text
                   language sql stable security definer set search_path = pg_catalog, pg_temp
                   as 'select community_code from {admin}.community_login where role_name = session_user'""",
            "revoke all on function {community_schema}.login_community() from public",
            "grant execute on function {community_schema}.login_community() to {group}",
        ]
        names = {"db": ident(database), "analyst": ident(analyst_role), "group": ident(group),
                 "admin": ident(ADMIN_SCHEMA), "stage": ident(STAGE_SCHEMA),
                 "analyst_schema": ident(ANALYST_SCHEMA), "community_schema": ident(COMMUNITY_SCHEMA)}
        for statement in statements:
            pg.execute(sql.SQL(statement).format(**names))
        prefix, destination = (pg.execute(f"show {name}").fetchone()[0]  # type: ignore[index]
                               for name in ("log_line_prefix", "log_destination"))
        if "%u" not in prefix and not {"csvlog", "jsonlog"} & set(destination.split(",")):
            log.warning("the server logs every statement of the audience roles, but its log_line_prefix %r "
                        "does not name the user: add %%u (e.g. '%%m [%%p] %%q%%u@%%d ') so each line says who "
                        "read what", prefix)
        if not logins:
            return
        pg.execute(sql.SQL("delete from {}.community_login").format(ident(ADMIN_SCHEMA)))
        by_code = {what: role for role, what in roles.items() if what != ANALYST_SCHEMA}
        with pg.cursor() as cur:
            cur.executemany(sql.SQL("insert into {}.community_login values (%s, %s, %s)").format(ident(ADMIN_SCHEMA)),
                            [(by_code[code], code, name) for code, name in communities])


# --- loading ------------------------------------------------------------------------------------

def _publish(pg: psycopg.Connection, duck: duckdb.DuckDBPyConnection, relations: list[_Relation], version: str,
             grantees: _Grantees, result: ServingResult, lock_timeout_s: float, lock_attempts: int,
             kept_root: Path | None = None, schemas: Sequence[str] = (ANALYST_SCHEMA, COMMUNITY_SCHEMA)) -> None:
    served = {(r[0], r[1]): (r[2], r[3], r[4]) for r in pg.execute(sql.SQL(
        "select p.schema_name, p.relation, p.content_hash, p.rows, p.files from {}.published p "
        "where to_regclass(quote_ident(p.schema_name) || '.' || quote_ident(p.relation)) is not null"
    ).format(sql.Identifier(ADMIN_SCHEMA)))}
    communities = [r[0] for r in pg.execute(sql.SQL("select community_code from {}.community_login").format(
        sql.Identifier(ADMIN_SCHEMA)))]
    # A login bound by row-level security (FORCE applies to a table's owner) would delete nothing from
    # a community table, and be refused the insert: such a login replaces those tables whole.
    unbound = bool(pg.execute("select rolsuper or rolbypassrls from pg_roles "
                              "where rolname = current_user").fetchone()[0])  # type: ignore[index]

    _clear_stage(pg, schemas)
    served_parts: dict[tuple[str, str], dict[str, str]] = {}
    served_where: dict[tuple[str, str, str], list] = {}
    for schema, relation, part, part_hash, where in pg.execute(sql.SQL(
            "select schema_name, relation, part, content_hash, part_where from {}.published_part").format(
            sql.Identifier(ADMIN_SCHEMA))):
        served_parts.setdefault((schema, relation), {})[part] = part_hash
        served_where[schema, relation, part] = where
    shapes = {(r[0], r[1]): r[2] for r in pg.execute(sql.SQL("select schema_name, relation, shape from {}.published")
                                                     .format(sql.Identifier(ADMIN_SCHEMA)))}
    token = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', version)[:40]}-{secrets.token_hex(4)}"
    staged: list[_Staged] = []
    for n, rel in enumerate(relations):
        started = time.perf_counter()
        source = _source(rel)
        columns = _columns(duck, rel, _source(rel, first=True) if rel.parts is not None else source)
        shape = ";".join(f"{c.name}:{c.pg_type}" for c in columns)
        if rel.parts is not None:
            content_hash, rows = _parts_hash(rel.parts, shape), sum(p.rows for p in rel.parts.values())
        else:
            content_hash, rows = _content_hash(duck, source, columns)
        result.rows[rel.key] = rows
        before_hash, _before_rows, before_files = served.get((rel.schema, rel.name), (None, None, None))
        if before_hash == content_hash:
            result.skipped.append(rel.key)
            if not _unchanged(before_files):
                # Served before its files were kept (or they are gone): these hold the same rows.
                pg.execute(sql.SQL("update {}.published set files = %s where schema_name = %s and relation = %s")
                           .format(sql.Identifier(ADMIN_SCHEMA)),
                           [_jsonb(_keep(rel, kept_root, token)), rel.schema, rel.name])
            continue
        stage_table = f"{_STAGE_PREFIX[rel.schema]}s{n}_{rel.name}"[:_PG_NAME_BYTES]
        before = served_parts.get((rel.schema, rel.name))
        changed = [pid for pid, p in (rel.parts or {}).items() if not before or before.get(pid) != p.hash]
        removed = [pid for pid in before or {} if pid not in (rel.parts or {})]
        diff = None
        if (before_files and shapes.get((rel.schema, rel.name)) == shape
                and (unbound or rel.schema == ANALYST_SCHEMA)):
            diff = _row_diff(duck, rel, columns, before_files, rows, shape, f"d{n}", _distinct(pg, rel))
        if diff is not None:
            # Changed rows only: their new copies in one stage table, their old copies in another.
            if rel.schema == COMMUNITY_SCHEMA:
                _check_community_rows(duck, rel, diff.insert, communities)
            _load(pg, duck, rel, diff.insert, columns, stage_table, diff.inserted, grantees, stage_only=True)
            removal = f"{_STAGE_PREFIX[rel.schema]}r{n}_{rel.name}"[:_PG_NAME_BYTES]
            _load(pg, duck, rel, diff.remove, columns, removal, diff.removed, grantees, stage_only=True)
            duck.execute(f"drop table {diff.insert}; drop table {diff.remove}")
            staged.append(_Staged(rel, stage_table, content_hash, rows, shape, None, list(rel.parts or {}),
                                  list(before or {}), removal=removal, removed_rows=diff.removed, key=diff.key))
            result.incremental.append(rel.key)
        # Part by part only while it is the smaller load: deleting and inserting most of a table costs
        # more than loading it aside and swapping it in.
        elif (rel.parts is not None and before and shapes.get((rel.schema, rel.name)) == shape
                and (unbound or rel.schema == ANALYST_SCHEMA) and all(p.where for p in rel.parts.values())
                and sum(rel.parts[pid].rows for pid in changed) <= INCREMENTAL_SHARE * rows):
            files = tuple(f for pid in changed for f in rel.parts[pid].files)
            delta = _Relation(rel.schema, rel.name, files or rel.files[:1], rel.parts)
            delta_source = _source(delta) if files else f"(select * from {_source(delta)} limit 0)"
            if rel.schema == COMMUNITY_SCHEMA:
                _check_community_rows(duck, delta, delta_source, communities)
            expected = sum(rel.parts[pid].rows for pid in changed)
            _load(pg, duck, delta, delta_source, columns, stage_table, expected, grantees, stage_only=True)
            wheres = [dict(rel.parts[pid].where) for pid in changed] + [
                {column: value for column, value in served_where[rel.schema, rel.name, pid]} for pid in removed]
            staged.append(_Staged(rel, stage_table, content_hash, rows, shape, wheres, changed, removed))
            result.incremental.append(rel.key)
        else:
            if rel.schema == COMMUNITY_SCHEMA:
                _check_community_rows(duck, rel, source, communities)
            _load(pg, duck, rel, source, columns, stage_table, rows, grantees)
            staged.append(_Staged(rel, stage_table, content_hash, rows, shape, None,
                                  list(rel.parts or {}), list(before or {})))
        staged[-1].files = _keep(rel, kept_root, token)
        result.published.append(rel.key)
        result.relation_seconds[rel.key] = time.perf_counter() - started
    started = time.perf_counter()
    _swap(pg, staged, relations, version, result, lock_timeout_s, lock_attempts, schemas)
    result.relation_seconds["swap"] = time.perf_counter() - started
    # Planner statistics of a table loaded whole: autovacuum gathers them within a minute, so the
    # publish does not wait for them (1.5-2 s of a 1.3M district's next day, issue #13); on a server
    # that runs without autovacuum, nothing else would, so they are gathered here.
    if pg.execute("show autovacuum").fetchone()[0] != "on":  # type: ignore[index]
        started = time.perf_counter()
        for st in staged:
            if st.wheres is None and st.removal is None:
                pg.execute(sql.SQL("analyze {}").format(sql.Identifier(st.rel.schema, st.rel.name)))
        result.relation_seconds["analyze"] = time.perf_counter() - started


@dataclass
class _Staged:
    rel: _Relation
    stage_table: str
    content_hash: str
    rows: int
    shape: str
    wheres: list[dict[str, str | None]] | None  # None: the stage table replaces the served one
    parts: list[str]                              # part ids (re)loaded
    removed: list[str]                            # part ids no longer published (or replaced wholesale)
    removal: str | None = None  # by changed rows: the stage table of the rows whose old copies go
    removed_rows: int = 0       # ... and how many served rows that deletes
    key: str | None = None      # ... the column they are matched on before their whole text
    files: list[dict] | None = None  # the files now served, as recorded in serving_admin.published


# --- by changed rows ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Diff:
    insert: str    # DuckDB temp table: the copies of rows to insert (new count minus old)
    remove: str    # DuckDB temp table: the copies of rows to delete (old count minus new)
    inserted: int
    removed: int
    key: str | None  # a column with no NULL among the removed rows, the most distinct one


def _row_diff(duck: duckdb.DuckDBPyConnection, rel: _Relation, columns: list[_Column], before: list[dict],
              rows: int, shape: str, tag: str, served_distinct: Mapping[str, float]) -> _Diff | None:
    """The rows whose count differs between the files last served and the new ones, or None when
    that cannot be known exactly or is not the smaller load.

    Rows are grouped by a 64-bit hash of all their values; within the groups whose count differs,
    each distinct row's count is compared exactly. So a hash shared by unrelated rows costs a little
    work, never a wrong result; only a row replaced by another of the very same hash would go
    unnoticed (about 2^-64 per pair). A file in both versions (a hard link of an unchanged part) has
    the same rows on both sides and is not read.
    """
    if not all(c.exact for c in columns):
        return None
    if not _unchanged(before):
        return None  # gone or rewritten since it was served
    old: Counter[tuple] = Counter((entry["path"], *entry["id"]) for entry in before)
    new: Counter[tuple] = Counter()
    for path in rel.files:
        identity = _file_id(path)
        if identity is None:
            return None
        new[(str(path), *identity)] += 1
    old_ids: Counter[tuple] = Counter()
    new_ids: Counter[tuple] = Counter()
    for counts, ids in ((old, old_ids), (new, new_ids)):
        for k, count in counts.items():
            ids[k[1:]] += count
    shared = old_ids & new_ids
    old_left = _drop_shared(old, shared)
    new_left = _drop_shared(new, shared)
    if old_left:
        old_rel = _Relation(rel.schema, rel.name, tuple(Path(p) for p in old_left))
        if ";".join(f"{c.name}:{c.pg_type}" for c in _columns(duck, old_rel, _source(old_rel))) != shape:
            return None
    names = [_duck_ident(c.name) for c in columns]
    # PostgreSQL keeps 0.0 and -0.0 apart, DuckDB's hash does not: the sign bit joins the hash.
    hashed = ", ".join(names + [f"signbit({_duck_ident(c.name)})" for c in columns if c.floating])
    select = ", ".join(names)

    def files(paths: list[str]) -> str:
        return "read_parquet([" + ", ".join(_duck_literal(p) for p in paths) + "], union_by_name = true)"

    sides = [f"select hash({hashed}) as h, {sign} as n from {files(paths)}"
             for paths, sign in ((new_left, 1), (old_left, -1)) if paths]
    changed, insert, remove = f"{tag}_changed", f"{tag}_insert", f"{tag}_remove"
    if not sides:
        return None  # the very same files, though the content hash differs: load it whole
    duck.execute(f"create or replace temp table {changed} as select h, sum(n) as n from ({' union all '.join(sides)}) "
                 "group by h having sum(n) <> 0")
    # Each changed group moves at least |n| rows: past the share already, stop before reading the rows.
    moved = duck.execute(f"select coalesce(sum(abs(n)), 0) from {changed}").fetchone()[0]  # type: ignore[index]
    if moved > ROWS_SHARE * max(rows, 1):
        duck.execute(f"drop table {changed}")
        return None
    # Within the changed groups, each distinct row's count on either side (the sign of zero kept
    # apart): the copies to remove and to insert are the difference, so a row served four times of
    # which one goes is one row deleted, not four deleted and three inserted.
    signs = [f"signbit({_duck_ident(c.name)})" for c in columns if c.floating]
    # (Column names of our own that no published relation uses: it may have an `n` or a `net`.)
    counted = [f"select {select}, {sign} as onenet_n_ from {files(paths)} "
               f"where hash({hashed}) in (select h from {changed})" for paths, sign in ((new_left, 1), (old_left, -1))
               if paths]
    duck.execute(f"create or replace temp table {tag}_net as select {select}, sum(onenet_n_) as onenet_net_ "
                 f"from ({' union all '.join(counted)}) group by {', '.join(names + signs)} "
                 "having sum(onenet_n_) <> 0")
    for table, where in ((insert, "onenet_net_ > 0"), (remove, "onenet_net_ < 0")):
        duck.execute(f"create or replace temp table {table} as select {select} from (select {select}, "
                     f"unnest(range(abs(onenet_net_)::bigint)) as onenet_copy_ from {tag}_net where {where})")
    duck.execute(f"drop table {changed}; drop table {tag}_net")
    inserted, removed = (int(duck.execute(f"select count(*) from {t}").fetchone()[0])  # type: ignore[index]
                         for t in (insert, remove))
    if inserted + removed > ROWS_SHARE * max(rows, 1):
        duck.execute(f"drop table {insert}; drop table {remove}")
        return None
    return _Diff(insert, remove, inserted, removed,
                 _match_key(duck, remove, columns, served_distinct) if removed else None)


def _drop_shared(files: Counter[tuple], shared: Counter[tuple]) -> list[str]:
    """The paths of `files` (path, *identity -> count) left once the shared identities are taken out."""
    left = Counter(shared)
    out = []
    for (path, *identity), count in files.items():
        take = min(count, left[tuple(identity)])
        left[tuple(identity)] -= take
        out += [path] * (count - take)
    return out


def _distinct(pg: psycopg.Connection, rel: _Relation) -> dict[str, float]:
    """Distinct values per column of the served table, as PostgreSQL's statistics estimate them."""
    return {r[0]: float(r[1]) for r in pg.execute(
        "select s.attname, case when s.n_distinct < 0 then -s.n_distinct * greatest(c.reltuples, 0) "
        "else s.n_distinct end from pg_stats s join pg_class c on c.relname = s.tablename "
        "and c.relnamespace = s.schemaname::regnamespace where s.schemaname = %s and s.tablename = %s",
        [rel.schema, rel.name])}


def _match_key(duck: duckdb.DuckDBPyConnection, remove: str, columns: list[_Column],
               served_distinct: Mapping[str, float]) -> str | None:
    """A column with no NULL among the rows to delete and the most distinct values in the served
    table (PostgreSQL's estimate, else among those rows): the served rows are semi-joined on it, and
    only those that match are compared by their whole text."""
    candidates = [c for c in columns if c.pg_type.split("(")[0] in _KEY_TYPES]
    if not candidates:
        return None
    figures = duck.execute("select count(*), " + ", ".join(
        f"count({_duck_ident(c.name)}), approx_count_distinct({_duck_ident(c.name)})" for c in candidates)
        + f" from {remove}").fetchone()
    assert figures is not None
    total, best, key = figures[0], (0.0, 0), None
    for i, column in enumerate(candidates):
        present, score = figures[1 + 2 * i], (served_distinct.get(column.name, 0.0), figures[2 + 2 * i])
        if present == total and score > best:
            best, key = score, column.name
    return key


def _unchanged(files: list[dict] | None) -> bool:
    """Whether recorded files are all still there, as they were."""
    return files is not None and all(list(_file_id(Path(f["path"])) or ()) == f["id"] for f in files)


def _jsonb(files: list[dict] | None) -> Jsonb | None:
    return None if files is None else Jsonb(files)


def _file_id(path: Path) -> tuple[int, int, int, int] | None:
    """What tells one file from another and from its own later rewrite: size, mtime, device, inode."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino


def _keep(rel: _Relation, root: Path | None, token: str) -> list[dict] | None:
    """The files as served, to be compared with the next version: hard links under `root` (so they
    outlive the snapshot version), else the given paths; None when they cannot be kept."""
    paths = list(rel.files)
    if root is not None:
        folder = root / f"{rel.schema}.{rel.name}" / token
        try:
            folder.mkdir(mode=0o700, parents=True)
            linked = []
            for i, path in enumerate(paths):
                os.link(path, folder / f"{i}.parquet")
                linked.append(folder / f"{i}.parquet")
        except OSError as exc:
            log.warning("serving database: cannot keep %s's files under %s (%s); its next change loads it whole",
                        rel.key, root, exc)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        paths = linked
    out = []
    for path in paths:
        identity = _file_id(path)
        if identity is None:
            return None
        out.append({"path": str(path), "id": list(identity)})
    return out


def _tidy_kept(pg: psycopg.Connection, root: Path, schemas: Sequence[str]) -> None:
    """Remove the kept files of `schemas`' relations that no served relation refers to any more
    (another audience's publish may be keeping files it has not recorded yet)."""
    wanted = {str(Path(entry["path"]).parent) for (files,) in pg.execute(sql.SQL(
        "select files from {}.published where files is not null").format(sql.Identifier(ADMIN_SCHEMA)))
        for entry in files}
    if not root.is_dir():
        return
    for relation in root.iterdir():
        if not relation.name.startswith(tuple(f"{s}." for s in schemas)):
            continue
        for folder in relation.iterdir() if relation.is_dir() else []:
            if str(folder) not in wanted:
                shutil.rmtree(folder, ignore_errors=True)
        if relation.is_dir() and not any(relation.iterdir()):
            relation.rmdir()


def _database(url: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(conninfo_to_dict(_conninfo(url)).get("dbname") or "serving"))


def parts_of(entry: Mapping, version_dir: Path, qualified: str, community: str | None = None) -> dict[str, Part]:
    """A relation's parts as a snapshot manifest entry records them (warehouse/publish), by part id."""
    folder = version_dir / "parquet" / f"{qualified}.parquet"
    out = {}
    for key, part in entry["parts"].items():
        where: list[tuple[str, str | None]] = []
        if community is not None:
            where.append(("community_code", community))
        if entry.get("partition"):
            column = entry["partition"] + (f"@{entry['every']}" if entry.get("every") else "")
            where.append((column, None if key == "~null" else key))
        part_id = json.dumps(where, ensure_ascii=False)
        # A part cut by week or month is no set of column = value: such relations are loaded by
        # changed rows or whole, never by deleting their parts (an empty where rules that out).
        exact = tuple(where) if not entry.get("every") else ()
        out[part_id] = Part(exact, part["hash"], int(part["rows"]), tuple(folder / f for f in part["files"]))
    return out


def relation_files_of(entry: Mapping, version_dir: Path, qualified: str) -> list[Path]:
    """A relation's files in a version: its parts' files, or its 0-row columns file when it has none."""
    folder = version_dir / "parquet" / f"{qualified}.parquet"
    files = [folder / f for part in entry["parts"].values() for f in part["files"]]
    return files or [folder / "columns.parquet"]


def _parts_hash(parts: Mapping[str, Part], shape: str) -> str:
    body = json.dumps(sorted((pid, p.hash, p.rows) for pid, p in parts.items()), ensure_ascii=False)
    return hashlib.sha256(f"{LOAD_FORMAT}|parts|duckdb {duckdb.__version__}|{shape}|{body}".encode()).hexdigest()


def _source(rel: _Relation, *, first: bool = False) -> str:
    files = ", ".join(_duck_literal(str(p)) for p in (rel.files[:1] if first else rel.files))
    return f"read_parquet([{files}], union_by_name = true)"


def _columns(duck: duckdb.DuckDBPyConnection, rel: _Relation, source: str) -> list[_Column]:
    relation = duck.sql(f"select * from {source}")
    columns = []
    for name, dtype in zip(relation.columns, relation.dtypes, strict=True):
        if len(name.encode()) > _PG_NAME_BYTES:
            raise ServingInputError(f"{rel.key}: column {name!r} is longer than PostgreSQL's 63 bytes; "
                                    "shorten it in the published relation")
        pg_type, expr = _pg_type(dtype, _duck_ident(name))
        columns.append(_Column(name, pg_type, expr, exact=_exact(dtype), floating=dtype.id in ("float", "double")))
    if rel.schema == COMMUNITY_SCHEMA:
        types = {c.name: c.pg_type for c in columns}
        if types.get("community_code") != "text":
            raise ServingInputError(f"{rel.key}: needs a text column community_code (row-level security reads it), "
                                    f"found {types.get('community_code', 'none')}")
    return columns


def _exact(dtype: DuckDBPyType) -> bool:
    """Whether distinct DuckDB values of this type stay distinct in PostgreSQL's text of them, with
    DuckDB's hash telling them apart: not JSON (jsonb normalises it), maps (jsonb sorts their keys),
    unions, nanoseconds (timestamp rounds them), nor floats inside lists and structs (0.0 and -0.0)."""
    text = str(dtype).upper()
    if any(word in text for word in ("JSON", "MAP(", "UNION(", "TIMESTAMP_NS")):
        return False
    return dtype.id in ("float", "double") or not ("FLOAT" in text or "DOUBLE" in text)


# DuckDB type id -> PostgreSQL type, for values whose DuckDB CSV text PostgreSQL reads as they are.
_SCALARS = {
    "varchar": "text", "boolean": "boolean", "tinyint": "smallint", "smallint": "smallint",
    "integer": "integer", "bigint": "bigint", "utinyint": "smallint", "usmallint": "integer",
    "uinteger": "bigint", "ubigint": "numeric", "hugeint": "numeric", "uhugeint": "numeric",
    "float": "real", "double": "double precision", "date": "date", "time": "time",
    "time with time zone": "timetz", "timestamp": "timestamp", "timestamp_s": "timestamp",
    "timestamp_ms": "timestamp", "timestamp_ns": "timestamp", "timestamp with time zone": "timestamptz",
    "interval": "interval", "uuid": "uuid", "enum": "text", "bignum": "numeric", "varint": "numeric",
}


def _pg_type(dtype: DuckDBPyType, expr: str) -> tuple[str, str]:
    """(PostgreSQL type, DuckDB expression producing its COPY text) for one column."""
    type_id = dtype.id
    if str(dtype) == "JSON":
        return "jsonb", f"{expr}::varchar"
    if type_id == "decimal":
        precision, scale = (cast(int, value) for _key, value in dtype.children)
        return f"numeric({precision},{scale})", expr
    if type_id == "blob":
        return "bytea", f"'\\x' || hex({expr})"
    if type_id in ("list", "array"):
        element = cast(DuckDBPyType, dict(dtype.children)["child"])
        element_type = _SCALARS.get(element.id) if str(element) != "JSON" else None
        if element.id == "decimal":
            element_type = _pg_type(element, "x")[0]
        if element_type:
            # A PostgreSQL array literal: every element double-quoted with \ and " escaped, NULL bare.
            quoted = ("list_transform({e}, x -> case when x is null then 'NULL' else "
                      "'\"' || replace(replace(x::varchar, '\\', '\\\\'), '\"', '\\\"') || '\"' end)")
            return (f"{element_type}[]",
                    f"'{{' || array_to_string({quoted.format(e=expr)}, ',') || '}}'")
        return "jsonb", f"to_json({expr})::varchar"
    if type_id in ("struct", "map", "union"):
        return "jsonb", f"to_json({expr})::varchar"
    if type_id in _SCALARS:
        return _SCALARS[type_id], expr
    return "text", f"{expr}::varchar"  # bit and whatever DuckDB adds later: served as its text


def _check_community_rows(duck: duckdb.DuckDBPyConnection, rel: _Relation, source: str,
                          communities: Sequence[str]) -> None:
    """Every row belongs to a known community: a row of an unknown one would be served to no one, silently."""
    unknown = duck.execute(f"select distinct community_code from {source} "
                           "where community_code is null or not list_contains(?, community_code) limit 5",
                           [list(communities)]).fetchall()
    if unknown:
        raise ServingInputError(f"{rel.key}: rows of communities {[u[0] for u in unknown]} not in the list of "
                                f"communities {list(communities)}: add the community or fix the published files")


def _content_hash(duck: duckdb.DuckDBPyConnection, source: str, columns: list[_Column]) -> tuple[str, int]:
    """An order-independent hash of the rows as served (columns, types and values), and the row count.

    The sum of every row's 64-bit DuckDB hash ignores row order and file layout, yet counts duplicate
    rows (an XOR would cancel them). A change goes unnoticed only if the sums collide (about 2^-64);
    DuckDB's version is part of the digest, since its hash function may change between versions.
    It is 5-8x faster than summing an MD5 of each row's JSON, and it runs on every publish.
    """
    names = ", ".join(_duck_ident(c.name) for c in columns)
    rows, total = duck.execute(f"select count(*), coalesce(sum(hash({names})::hugeint), 0)::varchar "
                               f"from {source}").fetchone()  # type: ignore[misc]
    shape = ";".join(f"{c.name}:{c.pg_type}" for c in columns)
    digest = hashlib.sha256(f"{LOAD_FORMAT}|duckdb {duckdb.__version__}|{shape}|{rows}|{total}".encode()).hexdigest()
    return digest, int(rows)


def _clear_stage(pg: psycopg.Connection, schemas: Sequence[str]) -> None:
    """Drop what an interrupted publish of `schemas` left in the stage schema (we hold their locks;
    another audience's publish may be loading its own stage tables meanwhile). Names without an
    audience's letter are from before the letters, when one lock covered every audience."""
    own = tuple(_STAGE_PREFIX[s] for s in schemas)
    left = [r[0] for r in pg.execute("select tablename from pg_tables where schemaname = %s", [STAGE_SCHEMA])
            if r[0].startswith(own) or re.match(r"[sr][0-9]+_", r[0])]
    for table in left:
        pg.execute(sql.SQL("drop table {}.{}").format(sql.Identifier(STAGE_SCHEMA), sql.Identifier(table)))


def _load(pg: psycopg.Connection, duck: duckdb.DuckDBPyConnection, rel: _Relation, source: str,
          columns: list[_Column], stage_table: str, rows: int, grantees: _Grantees, *,
          stage_only: bool = False) -> None:
    """DuckDB writes the rows as CSV into a pipe while COPY streams them into a new stage table; then its grants and policy."""
    select = ", ".join(f"{c.expr} as {_duck_ident(c.name)}" for c in columns)
    table = sql.Identifier(STAGE_SCHEMA, stage_table)
    definition = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.pg_type))
                                    for c in columns)
    names = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    with pg.transaction():
        pg.execute(sql.SQL("create table {} ({})").format(table, definition))
        # FREEZE: the table is new in this transaction, so its rows are written already frozen.
        copied = _stream(duck, f"select {select} from {source}", pg,
                         sql.SQL("copy {} ({}) from stdin (format csv, freeze true)").format(table, names), rel)
        if copied != rows:
            raise ServingError(f"{rel.key}: COPY loaded {copied} rows, DuckDB read {rows} from "
                               f"{[str(p) for p in rel.files]}")
        if stage_only:  # rows to insert into the served table: no grants, policy or index of its own
            return
        if rel.schema == ANALYST_SCHEMA:
            pg.execute(sql.SQL("grant select on {} to {}").format(table, sql.Identifier(grantees.analyst)))
        else:
            pg.execute(sql.SQL("create index on {} (community_code)").format(table))
            pg.execute(sql.SQL("alter table {} enable row level security").format(table))
            pg.execute(sql.SQL("alter table {} force row level security").format(table))
            pg.execute(sql.SQL("create policy own_community on {} for select to {} "
                               "using (community_code = (select {}.login_community()))").format(
                table, sql.Identifier(grantees.community), sql.Identifier(COMMUNITY_SCHEMA)))
            pg.execute(sql.SQL("grant select on {} to {}").format(table, sql.Identifier(grantees.community)))
    # No ANALYZE here: autovacuum's, or _publish's after the swap where the server runs without it.


def _stream(duck: duckdb.DuckDBPyConnection, query: str, pg: psycopg.Connection, copy_sql: sql.Composed,
            rel: _Relation) -> int:
    """Run DuckDB's CSV export of `query` into an OS pipe on a thread while COPY reads the other end.

    Export and load overlap, and nothing touches the disk. If COPY fails, closing the read end makes
    DuckDB's next write fail (broken pipe), so the thread always ends; if DuckDB fails, its end is
    closed, COPY sees the end of the data, and the error is raised here.
    """
    read_fd, write_fd = os.pipe()
    failure: list[BaseException] = []

    def export() -> None:
        try:
            duck.execute(f"copy ({query}) to '/dev/fd/{write_fd}' "
                         "(format csv, header false, quote '\"', escape '\"', nullstr '', use_tmp_file false)")
        except BaseException as exc:  # reported by the caller's thread
            failure.append(exc)
        finally:
            os.close(write_fd)

    writer = threading.Thread(target=export, name=f"serving-export-{rel.name}", daemon=True)
    writer.start()
    try:
        with os.fdopen(read_fd, "rb") as pipe, pg.cursor() as cur:
            with cur.copy(copy_sql) as copy:
                while chunk := pipe.read(1 << 20):
                    copy.write(chunk)
                if failure:  # before COPY ends, so a partial load is rolled back with its transaction
                    raise ServingError(f"{rel.key}: DuckDB could not export {[str(p) for p in rel.files]}: "
                                       f"{failure[0]}") from failure[0]
            return cur.rowcount
    except psycopg.DataError as exc:
        raise ServingError(f"{rel.key}: PostgreSQL refused a value from {[str(p) for p in rel.files]}: {exc}; "
                           "fix the published relation or the type mapping in warehouse/publish/serving.py") from exc
    finally:
        writer.join()


def _swap(pg: psycopg.Connection, staged: list[_Staged], relations: list[_Relation],
          version: str, result: ServingResult, lock_timeout_s: float, lock_attempts: int,
          schemas: Sequence[str]) -> None:
    """Move every staged table into place (or apply its changed parts) and drop the ones of `schemas`
    no longer published, in one transaction."""
    ident = sql.Identifier
    wanted = {(r.schema, r.name) for r in relations}
    present = pg.execute("select schemaname, tablename from pg_tables where schemaname = any(%s)",
                         [list(schemas)]).fetchall()
    stale = sorted((s, t) for s, t in present if (s, t) not in wanted)
    if not staged and not stale:
        return
    names = [st.rel.key for st in staged] + [f"{s}.{t}" for s, t in stale]
    for attempt in range(1, lock_attempts + 1):
        try:
            with pg.transaction():
                # A waiting DROP queues new readers behind it: wait briefly, and between attempts let them run.
                pg.execute(sql.SQL("set local lock_timeout = {}").format(
                    sql.Literal(f"{int(lock_timeout_s * 1000)}ms")))
                for st in staged:
                    rel, target = st.rel, ident(st.rel.schema, st.rel.name)
                    if st.removal is not None:
                        _apply_rows(pg, target, st)
                    elif st.wheres is None:
                        pg.execute(sql.SQL("drop table if exists {}").format(target))
                        pg.execute(sql.SQL("alter table {} set schema {}").format(ident(STAGE_SCHEMA, st.stage_table),
                                                                                  ident(rel.schema)))
                        pg.execute(sql.SQL("alter table {} rename to {}").format(ident(rel.schema, st.stage_table),
                                                                                 ident(rel.name)))
                    else:
                        # Row locks only: readers of the table go on reading the old rows until commit.
                        _delete_parts(pg, target, st.wheres)
                        pg.execute(sql.SQL("insert into {} select * from {}").format(
                            target, ident(STAGE_SCHEMA, st.stage_table)))
                        pg.execute(sql.SQL("drop table {}").format(ident(STAGE_SCHEMA, st.stage_table)))
                    pg.execute(sql.SQL("""insert into {}.published (schema_name, relation, version, content_hash,
                        rows, published_at, shape, files) values (%s, %s, %s, %s, %s, now(), %s, %s)
                        on conflict (schema_name, relation) do update set version = excluded.version,
                        content_hash = excluded.content_hash, rows = excluded.rows,
                        published_at = excluded.published_at, shape = excluded.shape,
                        files = excluded.files""").format(ident(ADMIN_SCHEMA)),
                        [rel.schema, rel.name, version, st.content_hash, st.rows, st.shape, _jsonb(st.files)])
                    _record_parts(pg, st)
                for schema, table in stale:
                    pg.execute(sql.SQL("drop table {}").format(ident(schema, table)))
                    for admin_table in ("published", "published_part"):
                        pg.execute(sql.SQL("delete from {}.{} where schema_name = %s and relation = %s").format(
                            ident(ADMIN_SCHEMA), ident(admin_table)), [schema, table])
            break
        except _Drift as exc:
            # Forget the files, so the next publish loads the relation whole.
            pg.execute(sql.SQL("update {}.published set files = null where schema_name = %s and relation = %s")
                       .format(ident(ADMIN_SCHEMA)), [exc.rel.schema, exc.rel.name])
            raise ServingError(f"{exc.rel.key}: {exc}; nothing was swapped, and the next publish loads it whole") \
                from exc
        except errors.LockNotAvailable as exc:
            if attempt == lock_attempts:
                raise ServingBusy(f"readers held {names} for more than {lock_timeout_s:g} s at each of "
                                  f"{lock_attempts} attempts, so nothing was swapped; publish again when their "
                                  "queries end, or raise lock_timeout_s / lock_attempts") from exc
            log.warning("serving database: readers hold %s; swap attempt %d of %d in %g s", names, attempt + 1,
                        lock_attempts, lock_timeout_s)
            time.sleep(lock_timeout_s)
    result.dropped.extend(f"{s}.{t}" for s, t in stale)


class _Drift(Exception):
    """The served table is not what its recorded files hold (changed by hand?)."""

    def __init__(self, rel: _Relation, message: str) -> None:
        super().__init__(message)
        self.rel = rel


def _apply_rows(pg: psycopg.Connection, target: sql.Composable, st: _Staged) -> None:
    """Delete the old copies of the changed rows and insert their new copies. Row locks only: readers
    go on reading the old rows until commit.

    A served row matches a removed one when their texts are equal (exact: NULLs, -0.0, 1.0 vs 1.00);
    a semi-join on a key column, or on the whole row, only narrows the comparisons. Of a row served
    n times whose removed copies are m, m go (the others may come from files both versions share).
    The count deleted must be the count DuckDB found in the old files.
    """
    ident = sql.Identifier
    removal = ident(STAGE_SCHEMA, cast(str, st.removal))
    if st.removed_rows:
        # A JIT compile costs more than it saves on a scan that mostly finds no match; the changed
        # rows' texts are sorted and hashed in memory.
        pg.execute("set local jit = off")
        pg.execute("set local work_mem = '64MB'")
        # The served table is scanned once and probed against the removed rows' key (a semi-join, so
        # the small side is the one hashed); only the rows that match are turned into text.
        match = ("s.{k} in (select r.{k} from {r} r)" if st.key
                 else "exists (select from {r} r where r.* = s.*)")  # composite equality: NULLs match
        cur = pg.execute(sql.SQL(
            "with gone as (select (r.*)::text as txt, count(*) as copies from {r} r group by 1), "
            f"hit as (select s.ctid as id, (s.*)::text as txt from {{t}} s where {match}), "
            "ranked as (select hit.id, row_number() over (partition by hit.txt) as nth, gone.copies "
            "from hit join gone on hit.txt = gone.txt) "
            "delete from {t} where ctid = any(array(select id from ranked where nth <= copies))").format(
            k=ident(st.key or "k"), r=removal, t=target))
        if cur.rowcount != st.removed_rows:
            raise _Drift(st.rel, f"{cur.rowcount} served rows matched the {st.removed_rows} rows to delete")
    pg.execute(sql.SQL("insert into {} select * from {}").format(target, ident(STAGE_SCHEMA, st.stage_table)))
    for table in (st.stage_table, cast(str, st.removal)):
        pg.execute(sql.SQL("drop table {}").format(ident(STAGE_SCHEMA, table)))


def _delete_parts(pg: psycopg.Connection, target: sql.Composable, wheres: list[dict[str, str | None]]) -> None:
    """Delete the rows of the given parts (each a set of column = value-as-text), one statement per
    set of columns."""
    by_columns: dict[tuple[str, ...], list[dict[str, str | None]]] = {}
    for where in wheres:
        by_columns.setdefault(tuple(sorted(where)), []).append(where)
    for columns, group in by_columns.items():
        keys = sql.SQL(", ").join(sql.Identifier(f"k{i}") for i in range(len(columns)))
        arrays = sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in columns)
        match = sql.SQL(" and ").join(
            sql.SQL("t.{}::text is not distinct from k.{}").format(sql.Identifier(c), sql.Identifier(f"k{i}"))
            for i, c in enumerate(columns))
        pg.execute(sql.SQL("delete from {} t using unnest({}) as k({}) where {}").format(target, arrays, keys, match),
                   [[w[c] for w in group] for c in columns])


def _record_parts(pg: psycopg.Connection, st: _Staged) -> None:
    """Keep serving_admin.published_part equal to the parts now served for the relation."""
    ident = sql.Identifier
    rel = st.rel
    gone = st.removed if st.wheres is not None and st.removal is None else None
    if gone is None:
        pg.execute(sql.SQL("delete from {}.published_part where schema_name = %s and relation = %s").format(
            ident(ADMIN_SCHEMA)), [rel.schema, rel.name])
    elif gone:
        pg.execute(sql.SQL("delete from {}.published_part where schema_name = %s and relation = %s "
                           "and part = any(%s)").format(ident(ADMIN_SCHEMA)), [rel.schema, rel.name, gone])
    if rel.parts:
        with pg.cursor() as cur:
            cur.executemany(sql.SQL("""insert into {}.published_part values (%s, %s, %s, %s, %s, %s)
                on conflict (schema_name, relation, part) do update set content_hash = excluded.content_hash,
                rows = excluded.rows, part_where = excluded.part_where""").format(ident(ADMIN_SCHEMA)),
                [(rel.schema, rel.name, pid, rel.parts[pid].hash, rel.parts[pid].rows,
                  json.dumps([list(w) for w in rel.parts[pid].where], ensure_ascii=False)) for pid in st.parts])


# --- small helpers ------------------------------------------------------------------------------

def _conninfo(url: str) -> str:
    """A libpq URL from a SQLAlchemy one (postgresql+psycopg://... -> postgresql://...)."""
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)


def _ensure_database(url: str) -> None:
    """Create the serving database if the server has none by that name (compose's first start)."""
    info = conninfo_to_dict(_conninfo(url))
    name = str(info.get("dbname") or "")
    if not name:
        raise ServingInputError("the serving URL names no database: add one, e.g. .../onenet_serving")
    try:
        psycopg.connect(_conninfo(url)).close()
        return
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise ServingError(f"cannot reach the serving database: {exc}; start PostgreSQL or fix "
                               "ONENET_SERVING_URL") from exc
    with psycopg.connect(make_conninfo(_conninfo(url), dbname="postgres"), autocommit=True) as pg:
        pg.execute(sql.SQL("create database {} encoding 'UTF8'").format(sql.Identifier(name)))


def _duck_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _duck_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
