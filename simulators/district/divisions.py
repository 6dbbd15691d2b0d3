"""Real GB/T 2260 division codes: the home district, its neighbours and migrants' places of origin.

Codes and names come from python-stdnum's ``stdnum/cn/loc.dat`` (a maintained copy of the
official code list, with the years each code was in use), so every code drawn is a real one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import stdnum

HOME_CODE = 420102  # 湖北省武汉市江岸区
HOME_CITY = "武汉市"
HOME_DISTRICT = "江岸区"
LANDLINE_AREA_CODE = "027"

# Registered residents were mostly issued their number in the home district; some in a
# neighbouring Wuhan district, and older ones under a code since retired (黄陂县 became 黄陂区).
HOME_ORIGINS = {
    420102: 0.80,  # 江岸区
    420103: 0.05,  # 江汉区
    420104: 0.03,  # 硚口区
    420106: 0.04,  # 武昌区
    420107: 0.02,  # 青山区
    420111: 0.02,  # 洪山区
    420116: 0.02,  # 黄陂区
    420123: 0.02,  # 黄陂县 (1983-1998): retired code, still valid for life
}

# Provinces (2-digit prefix) migrants come from, with weights: mostly rural Hubei, then neighbours.
MIGRANT_PROVINCES = {42: 0.55, 41: 0.12, 43: 0.10, 36: 0.07, 34: 0.06, 50: 0.04, 51: 0.04, 44: 0.02}

# The real street offices (街道) of 江岸区.
STREETS = [
    "大智街道", "一元街道", "车站街道", "四唯街道", "永清街道", "西马街道", "球场街道",
    "劳动街道", "二七街道", "新村街道", "丹水池街道", "台北街道", "花桥街道", "谌家矶街道",
    "后湖街道", "百步亭花园路街道", "塔子湖街道",
]

_COUNTY = re.compile(r'^\s+(\d{4}) county="(.*)"')
_PROVINCE = re.compile(r'^(\d{2}) province="(.*)"')
_RANGE = re.compile(r"^\[(\d*)-(\d*)\](.*)$")


@dataclass(frozen=True)
class Division:
    code: int
    name: str
    first_year: int | None
    last_year: int | None


def source() -> str:
    """Where the code list comes from, for the manifest."""
    return f"python-stdnum {stdnum.__version__} stdnum/cn/loc.dat"


@cache
def all_divisions() -> dict[int, Division]:
    """Every county-level code in the list, current and historical, with its latest name."""
    text = resources.files("stdnum.cn").joinpath("loc.dat").read_text(encoding="utf-8")
    out: dict[int, Division] = {}
    province = ""
    for line in text.splitlines():
        if m := _PROVINCE.match(line):
            province = m.group(1)
        elif (m := _COUNTY.match(line)) and province:
            first: int | None = None
            last: int | None = None
            name = m.group(2).split(",")[-1]
            if r := _RANGE.match(name):
                first = int(r.group(1)) if r.group(1) else None
                last = int(r.group(2)) if r.group(2) else None
                name = r.group(3)
            code = int(province + m.group(1))
            out[code] = Division(code, name, first, last)
    return out


@cache
def migrant_origins() -> dict[int, list[int]]:
    """Per migrant province, its real county-level codes (no city-level or 市辖区 codes)."""
    by_province: dict[int, list[int]] = {}
    for code, div in all_divisions().items():
        prov, rest = divmod(code, 10000)
        # Migrants are drawn from county codes in use today, outside the home city.
        in_use = div.last_year is None
        if prov in MIGRANT_PROVINCES and rest % 100 not in (0, 1) and code // 100 != HOME_CODE // 100 and in_use:
            by_province.setdefault(prov, []).append(code)
    return {p: sorted(c) for p, c in by_province.items()}


def name_of(code: int) -> str:
    return all_divisions()[code].name
