"""Chinese names: NFKC, spaces and interpuncts, traditional -> simplified, pinyin key, surname."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from contextlib import suppress
from functools import lru_cache

import duckdb
import pyarrow as pa
import zhconv
from duckdb.func import FunctionNullHandling, PythonUDFType
from duckdb.sqltypes import VARCHAR
from pypinyin import Style, lazy_pinyin

# Every dot people put between the parts of a minority name (阿依古丽·买买提): middle dot, bullet,
# hyphenation point, katakana middle dot (full and half width), bullet operator, dot operator,
# Greek ano teleia, runic punctuation, word separator middle dot; NFKC already folds some of them.
INTERPUNCTS = "\u00b7\u2022\u2027\u30fb\uff65\u2219\u22c5\u0387\u16eb\u2e31\u2e30\u10fb\u318d"
_INTERPUNCT_RE = re.compile(f"[{INTERPUNCTS}]+|(?<=[^\\x00-\\x7f])[.\\-](?=[^\\x00-\\x7f])")
_SPACES_RE = re.compile(r"\s+")

# Characters that are already simplified in names although zhconv maps them (乾 -> 干).
_KEEP_IN_NAMES = frozenset("乾")

# Compound surnames count as one surname; longest first is not needed (all are two characters).
COMPOUND_SURNAMES = frozenset(
    "欧阳 司马 诸葛 上官 尉迟 长孙 令狐 皇甫 公孙 慕容 东方 夏侯 宇文 澹台 万俟 单于 司徒 司空 "
    "闻人 轩辕 端木 呼延 南宫 独孤 西门 百里 东郭 公冶 太史 申屠 钟离 濮阳 淳于 拓跋 赫连 第五".split()
)

# Surnames whose reading as a surname differs from pypinyin's default (toneless).
SURNAME_PINYIN = {
    "单": "shan", "曾": "zeng", "解": "xie", "仇": "qiu", "区": "ou", "朴": "piao", "查": "zha",
    "盖": "ge", "乐": "yue", "覃": "qin", "尉": "yu", "缪": "miao", "翟": "zhai", "种": "chong",
    "秘": "bi", "繁": "po", "员": "yun", "召": "shao", "长": "chang", "重": "chong", "折": "she",
    "宿": "su", "纪": "ji", "牟": "mou", "华": "hua", "句": "gou", "阚": "kan", "莘": "shen",
    "过": "guo", "燕": "yan", "谌": "chen", "冼": "xian", "蕃": "pi", "适": "kuo", "粘": "nian",
    "朝": "chao", "卜": "bu", "柏": "bai", "藏": "zang", "任": "ren", "沈": "shen", "石": "shi",
    "薄": "bo", "黑": "he", "殷": "yin", "祭": "zhai", "都": "du", "能": "nai", "万": "wan",
    "尉迟": "yu chi", "长孙": "zhang sun", "万俟": "mo qi", "单于": "chan yu", "澹台": "tan tai",
    "令狐": "ling hu", "皇甫": "huang fu", "钟离": "zhong li", "濮阳": "pu yang",
}

_LETTERS_RE = re.compile(r"[a-z]+")

# No person's name is longer (the longest transliterated minority names run to about 30
# characters). A longer value is not a name — a pasted text, a 1 MB field of a broken export — and
# standardising it would cost seconds of pinyin per value in every merge; it stays in raw as it came.
MAX_NAME_CHARS = 100


@lru_cache(maxsize=200_000)
def standardise_name(raw: str | None) -> str | None:
    """NFKC, no whitespace, one interpunct '·', traditional -> simplified; None if nothing is left
    or if the value is longer than MAX_NAME_CHARS (not a name).

    '張 偉' -> '张伟', '阿依古丽•买买提' -> '阿依古丽·买买提'.
    """
    if raw is None or len(raw) > MAX_NAME_CHARS:
        return None
    s = unicodedata.normalize("NFKC", raw)
    s = _SPACES_RE.sub("", s)
    s = _INTERPUNCT_RE.sub("·", s).strip("·")
    if not s:
        return None
    simplified = zhconv.convert(s, "zh-cn")
    if len(simplified) == len(s) and _KEEP_IN_NAMES.intersection(s):
        simplified = "".join(o if o in _KEEP_IN_NAMES else c for o, c in zip(s, simplified, strict=True))
    return simplified


@lru_cache(maxsize=200_000)
def surname(name: str | None) -> str | None:
    """The surname of a standardised name: a compound one (欧阳) or the first character.

    None for names written with an interpunct (阿依古丽·买买提): they have no family name.
    """
    if not name or "·" in name:
        return None
    if len(name) >= 3 and name[:2] in COMPOUND_SURNAMES:
        return name[:2]
    return name[0]


@lru_cache(maxsize=200_000)
def pinyin_key(name: str | None) -> str | None:
    """Toneless pinyin syllables joined by single spaces, the surname read as a surname.

    Homophones share a key ('张伟' and '张玮' -> 'zhang wei'); '单雄信' -> 'shan xiong xin',
    '曾国藩' -> 'zeng guo fan'. Non-Han letters are lower-cased; other characters are dropped.
    """
    if not name:
        return None
    head = surname(name)
    parts: list[str] = []
    rest = name
    if head is not None and head in SURNAME_PINYIN:
        parts.append(SURNAME_PINYIN[head])
        rest = name[len(head):]
    for syllable in lazy_pinyin(rest, style=Style.NORMAL, errors="default"):
        parts.extend(_LETTERS_RE.findall(syllable.lower()))
    return " ".join(parts) or None


def _arrow(fn: Callable[[str | None], str | None]) -> Callable[[pa.Array], pa.Array]:
    """Lift a str -> str function to Arrow arrays (one Python call per value, cached)."""

    def run(values: pa.Array) -> pa.Array:
        return pa.array([fn(v) for v in values.to_pylist()], type=pa.string())

    return run


UDFS = {
    "std_name": standardise_name,
    "std_name_pinyin": pinyin_key,
    "std_name_surname": surname,
}


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Register the name UDFs on `con` (they live on the connection), replacing earlier ones.

    Call them over DISTINCT values (staging.stg_names does): each is a Python call per value.
    """
    for name, fn in UDFS.items():
        with suppress(duckdb.InvalidInputException):  # not registered on this connection yet
            con.remove_function(name)
        # SPECIAL: the functions see NULLs and may return NULL (a name of spaces only)
        con.create_function(name, _arrow(fn), [VARCHAR], VARCHAR, type=PythonUDFType.ARROW,
                            null_handling=FunctionNullHandling.SPECIAL, side_effects=False)
