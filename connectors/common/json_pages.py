"""JSON pages of an HTTP source as Arrow batches: typed known fields, inferred new ones, quarantine."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

from connectors.common.exceptions import SchemaDrift
from connectors.common.landing import Entity
from connectors.common.loads import Load

# A number as JSON text may carry: what DuckDB casts to a numeric raw column.
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
_INTEGER = re.compile(r"^\s*[-+]?\d+\s*$")

# The silos write Beijing time; a time without an offset is read as such, as the API does.
BEIJING = timezone(timedelta(hours=8))


def page_position(page: int, cursor: str | None, start: str = "start") -> str:
    """'page 3 (cursor …Q2LCJ9)': short enough for lineage, enough to find the request in a log."""
    return f"page {page} (cursor …{cursor[-8:]})" if cursor else f"page {page} ({start})"


def parse_instant(value: Any) -> datetime | None:
    """An aware datetime from ISO-8601 text (no offset: Beijing time), or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=BEIJING)


class JsonPages:
    """The pages of one load as Arrow batches: documented fields typed, new fields inferred,
    unreadable records held back for quarantine, and the latest `updated_at` seen.

    Shared by the JSON-over-HTTP connectors (hotline, city_cases).
    """

    def __init__(self, entity: Entity, fields: pa.Schema, updated_field: str = "updated_at"):
        self.entity = entity
        self.fields = fields
        self.updated_field = updated_field
        self.pages: list[tuple[str, pa.Table]] = []
        self.held: list[tuple[str, str, str]] = []
        self.notes: dict[str, str] = {}  # one note per column, the first page that showed it
        self._latest: tuple[datetime, str] | None = None
        self._documented = set(fields.names)
        # Documented numeric fields: a value that is no number at all (an object, a word) cannot
        # go into the raw table's numeric column, so its record is held back, not the whole load.
        self._numeric = {f.name: f.type for f in fields if f.name not in entity.required
                         and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))}

    @property
    def watermark(self) -> str | None:
        """The greatest `updated_at` of the rows kept, as delivered; None when none came."""
        return self._latest[1] if self._latest else None

    def add(self, records: list[Any], position: str) -> None:
        """Check one page and keep its rows; a required field missing or re-typed raises SchemaDrift."""
        source, name = self.entity.source, self.entity.name
        present = {field for record in records if isinstance(record, dict) for field in record}
        for column in self.entity.required:
            if present and column not in present:
                raise SchemaDrift(f"{source}: required column {column!r} is missing from {name} at {position}; "
                                  "the source changed its schema — nothing of this load was landed; fix the "
                                  "source or update the connector's settings")
        kept = []
        for number, record in enumerate(records, 1):
            problem = self._unreadable(record)
            if problem:
                raw = json.dumps(record, ensure_ascii=False, default=str)
                self.held.append((f"{position} record {number}", raw, problem))
            else:
                kept.append(record)
        if kept:
            self.pages.append((position, self._table(kept, position)))

    def _unreadable(self, record: Any) -> str | None:
        """Why a record cannot be landed (no key, no usable updated_at), or None; tracks the latest."""
        if not isinstance(record, dict):
            return f"not a JSON object: {type(record).__name__}"
        for key in self.entity.key:
            if record.get(key) is None:
                return f"no {key}: the record cannot be told apart from others"
        for name, kind in self._numeric.items():
            if not _fits_number(record.get(name), kind):
                shown = json.dumps(record.get(name), ensure_ascii=False, default=str)
                return f"{name} {shown[:80]} is not a number (documented as {kind})"
        value = record.get(self.updated_field)
        if not isinstance(value, str | None):
            return None  # another type: a schema change, which the page's type check reports
        moment = parse_instant(value)
        if value is None or moment is None:
            return f"{self.updated_field} {value!r} is not an ISO-8601 time"
        if self._latest is None or moment > self._latest[0]:
            self._latest = (moment, value)
        return None

    def _table(self, records: list[dict[str, Any]], position: str) -> pa.Table:
        delivered = {field for record in records for field in record}
        if delivered <= self._documented:
            # The usual page: documented fields only. Arrow converts the records in C++ (3x faster
            # than column by column); a value of another type makes it refuse, and the page is
            # then read column by column below, which says what changed.
            try:
                return pa.Table.from_pylist(records, schema=pa.schema(
                    [f for f in self.fields if f.name in delivered]))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass
        names = [f for f in self.fields.names if any(f in r for r in records)]
        names += [f for f in dict.fromkeys(k for r in records for k in r) if f not in self.fields.names]
        arrays = [_array([r.get(n) for r in records],
                         self.fields.field(n).type if n in self.fields.names else None) for n in names]
        table = pa.table(dict(zip(names, arrays, strict=True)))
        for field in table.schema:
            if field.name not in self.fields.names or pa.types.is_null(field.type):
                continue
            expected = self.fields.field(field.name).type
            if field.type == expected:
                continue
            if field.name in self.entity.required:
                raise SchemaDrift(f"{self.entity.source}: required column {field.name!r} of {self.entity.name} "
                                  f"arrived as {field.type} at {position}, expected {expected}; nothing of "
                                  "this load was landed — fix the source or update the connector's settings")
            self.notes.setdefault(field.name, f"column {field.name!r} arrived as {field.type} at {position}, "
                                              f"documented as {expected}; landed as delivered")
        return table

    def into(self, load: Load) -> None:
        """Hand the load every page (types made to agree across pages), the held records, the notes."""
        delivered = {f for _, table in self.pages for f in table.column_names}
        for name in self.fields.names:
            if self.pages and name not in delivered:
                self.notes.setdefault(name, f"documented column {name!r} was not delivered")
        for position, table in self._unified():
            load.add(table, position)
        for position, raw, reason in self.held:
            load.quarantine(position, raw, reason)
        for note in self.notes.values():
            load.note(note)

    def _unified(self) -> list[tuple[str, pa.Table]]:
        # A field may be a number on one page and text on the next (or all null on one): the
        # load concatenates the pages, so give each column one type — text unless all numeric.
        seen: dict[str, set[pa.DataType]] = {}
        for _, table in self.pages:
            for field in table.schema:
                if not pa.types.is_null(field.type):
                    seen.setdefault(field.name, set()).add(field.type)
        target: dict[str, pa.DataType] = {}
        for name, types in seen.items():
            if len(types) > 1:
                numeric = all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types)
                target[name] = pa.float64() if numeric else pa.string()
                self.notes.setdefault(name, f"column {name!r} arrived as {' and '.join(sorted(map(str, types)))} "
                                            f"on different pages; landed as {target[name]}")
        if not target:
            return self.pages
        return [(position, table.cast(pa.schema([
            pa.field(f.name, target[f.name]) if f.name in target else f for f in table.schema])))
            for position, table in self.pages]


def _fits_number(value: Any, kind: pa.DataType) -> bool:
    """Whether a delivered value can land in a numeric column of type `kind` (None always can)."""
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return pa.types.is_floating(kind) or value.is_integer()
    if isinstance(value, str):
        return bool((_NUMBER if pa.types.is_floating(kind) else _INTEGER).match(value))
    return False


def _array(values: list[Any], declared: pa.DataType | None) -> pa.Array:
    """The documented type when the values fit it, else inferred; objects and mixtures as JSON text."""
    if declared is not None:
        try:
            return pa.array(values, declared)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # re-typed upstream: infer, and let the caller decide whether that is drift
    if not any(isinstance(v, dict | list) for v in values):
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    return pa.array([v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False)
                     for v in values], pa.string())
