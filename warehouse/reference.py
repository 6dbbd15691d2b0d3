"""Reference lists in the warehouse: GB/T 2260 division codes from python-stdnum's loc.dat."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import duckdb
import stdnum

from warehouse.db import transaction

DIVISION_SOURCE = "python-stdnum stdnum/cn/loc.dat"

# loc.dat: a province line `42 province="湖北省"`, then its codes as `  0102 county="[1983-]江岸区"`.
# 0000 is the province itself and xx00 a city; a code renamed over time lists every name with its
# years: `[1983-2000]石灰窑区,[2001-]西塞山区`.
_PROVINCE = re.compile(r'^(\d{2}) province="(.*)"$')
_COUNTY = re.compile(r'^ +(\d{4}) county="(.*)"$')
_NAME = re.compile(r"^(?:\[(\d*)-(\d*)\])?(.*)$")


@dataclass(frozen=True)
class Division:
    """One division code with its latest name and the years it was in use (None: open-ended)."""

    code: str
    name: str
    first_year: int | None
    last_year: int | None


def _split_name(text: str) -> tuple[int | None, int | None, str]:
    """'[1983-2000]石灰窑区' -> (1983, 2000, '石灰窑区'); no bracket: in use throughout the list."""
    m = _NAME.match(text)
    if not m:
        return None, None, text
    first, last, name = m.groups()
    return (int(first) if first else None), (int(last) if last else None), name


def parse_loc_dat(text: str) -> list[Division]:
    """Every code in a loc.dat text (province, city and county level, current and historical)."""
    out: list[Division] = []
    province = ""
    for line in text.splitlines():
        if m := _PROVINCE.match(line):
            province = m.group(1)
        elif (m := _COUNTY.match(line)) and province:
            names = [_split_name(part) for part in m.group(2).split(",")]
            firsts = [first for first, _, _ in names]
            _, last_year, name = names[-1]
            # The code's span runs from its earliest name's first year to its latest name's last.
            first_year = None if None in firsts else min(f for f in firsts if f is not None)
            out.append(Division(province + m.group(1), name, first_year, last_year))
    return out


def loc_dat_text() -> str:
    """The loc.dat shipped with the installed python-stdnum."""
    return resources.files("stdnum.cn").joinpath("loc.dat").read_text(encoding="utf-8")


@cache
def division_codes() -> frozenset[str]:
    """The set of known division codes, for checks that run outside the warehouse."""
    return frozenset(d.code for d in parse_loc_dat(loc_dat_text()))


def load_division_codes(con: duckdb.DuckDBPyConnection) -> int:
    """Replace ref.division_codes with stdnum's list, record its version; return the row count.

    Opens its own transaction, so call it outside one.
    """
    divisions = parse_loc_dat(loc_dat_text())
    with transaction(con):
        con.execute("delete from ref.division_codes")
        # One statement over parallel lists: far faster than a row-by-row executemany.
        con.execute(
            "insert into ref.division_codes "
            "select unnest($1::varchar[]), unnest($2::varchar[]), unnest($3::integer[]), unnest($4::integer[])",
            [[d.code for d in divisions], [d.name for d in divisions],
             [d.first_year for d in divisions], [d.last_year for d in divisions]],
        )
        con.execute("insert or replace into ref.sources values ('division_codes', ?, ?, now())",
                    [DIVISION_SOURCE, stdnum.__version__])
    return len(divisions)
