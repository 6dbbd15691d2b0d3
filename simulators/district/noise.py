"""Noise rates (documented defaults) and the functions that apply them to one value.

Each silo gets its own rates because each is typed differently: the grid registry is keyed in
by grid workers, the hotline is heard over the phone, the health-code platform verifies IDs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from . import names

FULLWIDTH = str.maketrans("0123456789Xx- ", "０１２３４５６７８９Ｘｘ－\u3000")
CN_DIGITS = "零一二三四五六七八九"


@dataclass(frozen=True)
class SiloNoise:
    """Per-record probabilities of each kind of noise in one silo (see README, 'Noise')."""

    id_missing: float = 0.0       # ID number left empty
    id_typo: float = 0.0          # one digit wrong, or two adjacent digits swapped (always invalid)
    id_lower_x: float = 0.5       # of IDs ending in X: written as lower-case x
    id_fullwidth: float = 0.0     # typed with full-width digits (１２３…)
    id_spaces: float = 0.0        # spaces inside the number
    id_legacy15_old: float = 0.0  # of people born before 1960: the old 15-digit number
    name_homophone: float = 0.0   # one character replaced by a homophone (伟→玮)
    name_traditional: float = 0.0  # typed in traditional characters (张伟→張偉)
    name_spaced: float = 0.0      # a space between surname and given name
    name_missing: float = 0.0
    phone_missing: float = 0.0
    phone_formatted: float = 0.3  # +86, 86-, dashes or spaces
    phone_outdated: float = 0.0   # of people who changed number: the old one is still on file
    address_variant: float = 0.5  # building/unit written another way (3栋, 三号楼, 3-2-501)
    address_no_prefix: float = 0.3  # city/district/street prefix left out
    duplicate_row: float = 0.0    # the same record delivered twice


@dataclass(frozen=True)
class NoiseRates:
    """All noise parameters of a simulated district; the defaults are what the README documents."""

    grid_registry: SiloNoise = field(default_factory=lambda: SiloNoise(
        id_missing=0.01, id_typo=0.01, id_lower_x=0.3, id_fullwidth=0.005, id_spaces=0.005,
        id_legacy15_old=0.3, name_homophone=0.01, name_traditional=0.003, name_spaced=0.003,
        phone_missing=0.05, phone_formatted=0.2, phone_outdated=0.5, address_variant=0.3,
        address_no_prefix=0.2, duplicate_row=0.005))
    hotline: SiloNoise = field(default_factory=lambda: SiloNoise(
        id_missing=0.7, id_typo=0.03, id_lower_x=0.6, id_fullwidth=0.01, id_spaces=0.01,
        name_homophone=0.05, name_traditional=0.005, name_spaced=0.01, name_missing=0.05,
        phone_missing=0.02, phone_formatted=0.4, phone_outdated=0.1, address_variant=0.6,
        address_no_prefix=0.4))
    health_codes: SiloNoise = field(default_factory=lambda: SiloNoise(
        id_typo=0.001, id_lower_x=0.2, id_fullwidth=0.005, id_spaces=0.003,
        name_traditional=0.005, name_spaced=0.002, phone_missing=0.01, phone_formatted=0.2,
        phone_outdated=0.2, duplicate_row=0.005))
    city_cases: SiloNoise = field(default_factory=lambda: SiloNoise(
        name_homophone=0.03, name_missing=0.1, phone_missing=0.05, phone_formatted=0.3,
        address_variant=0.6, address_no_prefix=0.5))
    hotline_id_masked: float = 0.8  # of hotline IDs given: masked to first 6 + last 4
    health_coverage: float = 0.92   # share of residents aged 3+ with a health code

    def as_dict(self) -> dict:
        return asdict(self)


# --- functions on one value; `r` is a uniform [0,1) draw so callers stay vectorised over RNG ---

def id_typo(id18: str, r: float) -> str:
    """One digit wrong or two adjacent digits swapped; MOD 11-2 catches both, so the result is invalid."""
    body = list(id18)
    pos = int(r * 16)
    if r < 0.5 and body[pos] != body[pos + 1]:
        body[pos], body[pos + 1] = body[pos + 1], body[pos]
    else:
        body[pos] = str((int(body[pos]) + 1 + int(r * 1000) % 9) % 10)
    return "".join(body)


def id_masked(id18: str) -> str:
    return id18[:6] + "*" * 8 + id18[-4:]


def id_spaced(value: str) -> str:
    return value[:6] + " " + value[6:14] + " " + value[14:]


def fullwidth(value: str) -> str:
    return value.translate(FULLWIDTH)


def phone_formatted(phone: str, r: float) -> str:
    """A mobile or landline as people write it."""
    if phone.startswith("027"):
        return ["(027)" + phone[3:], "027 " + phone[3:], phone[3:]][int(r * 3)]
    forms = [
        f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}",
        f"{phone[:3]}-{phone[3:7]}-{phone[7:]}",
        f"86-{phone}",
        f"{phone[:3]} {phone[3:7]} {phone[7:]}",
        f"+86{phone}",
    ]
    return forms[int(r * len(forms))]


def name_noisy(name: str, kind: str, r: float) -> str:
    if kind == "homophone":
        return names.homophone_typo(name, r)
    if kind == "traditional":
        return names.to_traditional(name)
    if kind == "spaced":
        return name[0] + (" " if r < 0.7 else "\u3000") + name[1:]
    raise ValueError(kind)


def cn_number(n: int) -> str:
    """1..99 in Chinese numerals (三, 十二, 二十一)."""
    tens, ones = divmod(n, 10)
    if tens == 0:
        return CN_DIGITS[ones]
    head = "" if tens == 1 else CN_DIGITS[tens]
    return head + "十" + (CN_DIGITS[ones] if ones else "")


def address_text(prefix: str, compound: str, building: int, unit: int | None, room: int | None,
                 variant: float | None, no_prefix: bool) -> str:
    """A free-hand address; variant None gives the canonical form '3号楼2单元501'.

    Without unit and room it names a building only (city cases point at a spot, not a flat).
    """
    if unit is None or room is None:
        forms = [f"{building}号楼", f"{building}栋", f"{building}幢", f"{cn_number(building)}号楼",
                 f"{building}#楼", fullwidth(f"{building}号楼")]
        tail = forms[0] if variant is None else forms[1 + int(variant * (len(forms) - 1))]
    elif variant is None:
        tail = f"{building}号楼{unit}单元{room}"
    else:
        forms = [
            f"{building}栋{unit}单元{room}室",
            f"{building}幢{unit}单元{room}",
            f"{cn_number(building)}号楼{cn_number(unit)}单元{room}",
            f"{building}-{unit}-{room}",
            f"{building}#楼{unit}单元{room}号",
            fullwidth(f"{building}号楼{unit}单元{room}"),
        ]
        tail = forms[int(variant * len(forms))]
    return ("" if no_prefix else prefix) + compound + tail
