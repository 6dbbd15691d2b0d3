"""Standardisers on tables of tricky cases: IDs, phones and addresses (SQL macros), names (UDFs)."""

from __future__ import annotations

from datetime import date
from importlib import resources

import duckdb
import pytest
from stdnum.cn import ric

from warehouse.reference import load_division_codes
from warehouse.standardise import install
from warehouse.standardise.names import pinyin_key, standardise_name, surname


@pytest.fixture(scope="module")
def con():
    """An in-memory DuckDB with the reference division codes and the standardisers installed."""
    c = duckdb.connect()
    c.execute(resources.files("warehouse").joinpath("migrations", "002_reference.sql").read_text("utf-8"))
    load_division_codes(c)
    install(c)
    yield c
    c.close()


def full_id(body17: str) -> str:
    """A valid 18-character ID from a 17-digit body (check character by python-stdnum)."""
    return body17 + ric.calc_check_digit(body17 + "0")


def body_with_check(prefix14: str, want: str) -> str:
    """A 17-digit body starting `prefix14` whose check character is `want` (e.g. 'X')."""
    for seq in range(1000):
        body = f"{prefix14}{seq:03d}"
        if ric.calc_check_digit(body + "0") == want:
            return body
    raise AssertionError(f"no body for check char {want}")


def fullwidth(s: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in s)


X_ID = full_id(body_with_check("42010219900307", "X"))      # ends in X, born 1990-03-07
MALE_ID = full_id("42010219851231001")                      # 17th digit 1: male
FEMALE_ID = full_id("42010219851231002")                    # 17th digit 2: female
LEGACY15 = "420102490326956"                                # 15 digits, born 1949-03-26
LEGACY18 = full_id("420102" + "19" + LEGACY15[6:])
TYPO = MALE_ID[:7] + str((int(MALE_ID[7]) + 1) % 10) + MALE_ID[8:]  # one digit wrong
SWAP = MALE_ID[:10] + MALE_ID[11] + MALE_ID[10] + MALE_ID[12:]      # adjacent swap (3 <-> 1)
UNKNOWN_DIVISION = full_id("99999919851231001")
BAD_DATE = full_id("42010219900231001")                     # 31 February
FUTURE = full_id("42010221990101001")

# raw value -> (kind, std, prefix6, suffix4)
ID_CASES: list[tuple[str | None, str, str | None, str | None, str | None]] = [
    (MALE_ID, "valid", MALE_ID, MALE_ID[:6], MALE_ID[-4:]),
    (X_ID, "valid", X_ID, X_ID[:6], X_ID[-4:]),
    (X_ID[:-1] + "x", "valid", X_ID, X_ID[:6], X_ID[-4:]),                  # lower-case x
    (fullwidth(X_ID), "valid", X_ID, X_ID[:6], X_ID[-4:]),                 # full-width digits and Ｘ
    (fullwidth(X_ID[:-1]) + "ｘ", "valid", X_ID, X_ID[:6], X_ID[-4:]),     # full-width lower x
    (f"{X_ID[:6]} {X_ID[6:14]} {X_ID[14:]}", "valid", X_ID, X_ID[:6], X_ID[-4:]),  # spaces
    (f" {MALE_ID}\u3000", "valid", MALE_ID, MALE_ID[:6], MALE_ID[-4:]),    # ideographic space
    (f"{MALE_ID[:6]}-{MALE_ID[6:]}", "valid", MALE_ID, MALE_ID[:6], MALE_ID[-4:]),
    (LEGACY15, "legacy15", LEGACY18, LEGACY18[:6], LEGACY18[-4:]),          # 15 -> 18 with check char
    (fullwidth(LEGACY15), "legacy15", LEGACY18, LEGACY18[:6], LEGACY18[-4:]),
    ("420102********1234", "masked", None, "420102", "1234"),
    ("420102********123x", "masked", None, "420102", "123X"),
    ("420******1234", "masked", None, None, "1234"),
    (TYPO, "invalid", None, None, None),
    (SWAP, "invalid", None, None, None),
    (UNKNOWN_DIVISION, "invalid", None, None, None),
    (BAD_DATE, "invalid", None, None, None),
    (FUTURE, "invalid", None, None, None),
    (MALE_ID[:-1], "invalid", None, None, None),                            # 17 characters
    ("4201021990030712", "invalid", None, None, None),                      # 16 digits
    ("不详", "invalid", None, None, None),
    ("", "missing", None, None, None),
    ("   ", "missing", None, None, None),
    (None, "missing", None, None, None),
]


def test_the_swapped_and_typo_ids_really_differ():
    assert TYPO != MALE_ID and SWAP != MALE_ID and not ric.is_valid(TYPO) and not ric.is_valid(SWAP)


@pytest.mark.parametrize(("raw", "kind", "std", "prefix6", "suffix4"), ID_CASES)
def test_id(con, raw, kind, std, prefix6, suffix4):
    got = con.execute("select std_id(?::varchar)", [raw]).fetchone()[0]
    assert (got["kind"], got["std"], got["prefix6"], got["suffix4"]) == (kind, std, prefix6, suffix4)
    assert got["valid"] is (kind in ("valid", "legacy15"))


def test_id_birth_date_and_sex(con):
    rows = con.execute("select std_id(?), std_id(?), std_id(?), std_id(?)",
                       [MALE_ID, FEMALE_ID, LEGACY15, TYPO]).fetchone()
    male, female, legacy, typo = rows
    assert (male["birth_date"], male["sex"]) == (date(1985, 12, 31), "男")
    assert (female["birth_date"], female["sex"]) == (date(1985, 12, 31), "女")
    # 15 digits: the last digit is the sequence, its parity the sex (6 -> female)
    assert (legacy["birth_date"], legacy["sex"]) == (date(1949, 3, 26), "女")
    assert (typo["birth_date"], typo["sex"]) == (None, None)


def test_id_check_char_matches_stdnum_on_many_bodies(con):
    """The integer MOD 11-2 in SQL agrees with python-stdnum on 2,000 bodies of every check char."""
    got = con.execute("""
        select body, std_id_check_char(body)
        from (select '4201021990' || lpad(cast(i as varchar), 7, '0') as body from range(0, 9_999_999, 4999) t(i))
    """).fetchall()
    assert len(got) > 1900
    assert all(check == ric.calc_check_digit(body + "0") for body, check in got)
    assert {check for _, check in got} == set("0123456789X")


def test_id_kinds_agree_with_the_validation_rules(con):
    """SQL kinds agree with the pure-Python rules the validation layer uses, case by case."""
    from expectations.identity import classify_resident_id  # imports Great Expectations: slow

    # dashes inside a number are cleaned here but not by the validation rules
    raws = [raw for raw, *_ in ID_CASES if raw and raw.strip() and "-" not in raw]
    for raw in raws:
        expected = classify_resident_id(raw)
        got = con.execute("select std_id(?).kind", [raw]).fetchone()[0]
        assert got == (expected if expected in ("valid", "legacy15", "masked") else "invalid"), raw


def test_without_division_codes_the_shape_is_enough():
    c = duckdb.connect()
    c.execute(resources.files("warehouse").joinpath("migrations", "002_reference.sql").read_text("utf-8"))
    install(c)
    assert c.execute("select std_id(?).kind", [UNKNOWN_DIVISION]).fetchone() == ("valid",)
    c.close()


PHONE_CASES = [
    ("13912345678", "13912345678", "mobile"),
    ("+86 139-1234-5678", "13912345678", "mobile"),
    ("86-13912345678", "13912345678", "mobile"),
    ("+8613912345678", "13912345678", "mobile"),
    ("008613912345678", "13912345678", "mobile"),
    ("139 1234 5678", "13912345678", "mobile"),
    ("１３９１２３４５６７８", "13912345678", "mobile"),
    ("（０２７）８２３４５６７８", "02782345678", "landline"),
    ("027-82345678", "02782345678", "landline"),
    ("(027)82345678", "02782345678", "landline"),
    ("027 82345678", "02782345678", "landline"),
    ("82345678", "02782345678", "landline"),              # local number: the district's area code
    ("+86 27 8234 5678", "02782345678", "landline"),      # area code after +86 gets its 0 back
    ("010-12345678", "01012345678", "landline"),
    ("12912345678", None, "invalid"),                     # 12x is not a mobile prefix
    ("1391234567", None, "invalid"),                      # 10 digits
    ("10086", None, "invalid"),
    ("无", None, "missing"),
    ("", None, "missing"),
    (None, None, "missing"),
]


@pytest.mark.parametrize(("raw", "std", "kind"), PHONE_CASES)
def test_phone(con, raw, std, kind):
    got = con.execute("select std_phone(?::varchar)", [raw]).fetchone()[0]
    assert (got["std"], got["kind"]) == (std, kind)


NAME_CASES = [
    # raw, std, pinyin, surname
    ("张伟", "张伟", "zhang wei", "张"),
    ("张玮", "张玮", "zhang wei", "张"),          # homophone: one pinyin key
    ("張偉", "张伟", "zhang wei", "张"),          # traditional
    ("劉德華", "刘德华", "liu de hua", "刘"),
    ("张 伟", "张伟", "zhang wei", "张"),         # spaced
    ("张\u3000伟", "张伟", "zhang wei", "张"),    # ideographic space
    (" 王秀兰 ", "王秀兰", "wang xiu lan", "王"),
    ("阿依古丽·买买提", "阿依古丽·买买提", "a yi gu li mai mai ti", None),
    ("阿依古丽•买买提", "阿依古丽·买买提", "a yi gu li mai mai ti", None),   # bullet
    ("阿依古丽・买买提", "阿依古丽·买买提", "a yi gu li mai mai ti", None),  # katakana middle dot
    ("阿依古丽．买买提", "阿依古丽·买买提", "a yi gu li mai mai ti", None),  # full-width full stop
    ("阿依古丽 · 买买提", "阿依古丽·买买提", "a yi gu li mai mai ti", None),
    ("单雄信", "单雄信", "shan xiong xin", "单"),  # surname heteronyms
    ("曾国藩", "曾国藩", "zeng guo fan", "曾"),
    ("解缙", "解缙", "xie jin", "解"),
    ("仇英", "仇英", "qiu ying", "仇"),
    ("区伟", "区伟", "ou wei", "区"),
    ("朴树", "朴树", "piao shu", "朴"),
    ("查良镛", "查良镛", "zha liang yong", "查"),
    ("盖聂", "盖聂", "ge nie", "盖"),
    ("乐嘉", "乐嘉", "yue jia", "乐"),
    ("覃伟", "覃伟", "qin wei", "覃"),
    ("尉迟恭", "尉迟恭", "yu chi gong", "尉迟"),  # compound surnames
    ("欧阳娜娜", "欧阳娜娜", "ou yang na na", "欧阳"),
    ("司马子轩", "司马子轩", "si ma zi xuan", "司马"),
    ("诸葛子宏", "诸葛子宏", "zhu ge zi hong", "诸葛"),
    ("歐陽鋒", "欧阳锋", "ou yang feng", "欧阳"),
    ("吕布", "吕布", "lv bu", "吕"),
    ("乾伟", "乾伟", "qian wei", "乾"),          # 乾 is simplified in names; zhconv would make it 干
    ("Ｊｏｈｎ", "John", "john", "J"),
    ("", None, None, None),
    (None, None, None, None),
]


@pytest.mark.parametrize(("raw", "std", "pinyin", "family"), NAME_CASES)
def test_name(raw, std, pinyin, family):
    assert standardise_name(raw) == std
    assert pinyin_key(std) == pinyin
    assert surname(std) == family


def test_name_udfs_in_sql_match_python(con):
    raws = [raw for raw, *_ in NAME_CASES]
    got = con.execute("""
        select raw, std_name(raw), std_name_pinyin(std_name(raw)), std_name_surname(std_name(raw))
        from unnest(?::varchar[]) t(raw)
    """, [raws]).fetchall()
    expected = {raw: (std, py, fam) for raw, std, py, fam in NAME_CASES}
    assert len(got) == len(raws)
    for raw, std, py, fam in got:
        assert (std, py, fam) == expected[raw]


ADDRESS_CASES = [
    # raw, (community, compound, building, unit, room)
    ("武汉市江岸区大智街道花桥新村7#楼3单元401号", (None, "花桥新村", "7", "3", "401")),
    ("花桥新村3幢3单元101", (None, "花桥新村", "3", "3", "101")),
    ("花桥新村三号楼", (None, "花桥新村", "3", None, None)),
    ("花桥新村3号楼", (None, "花桥新村", "3", None, None)),
    ("花桥新村3栋", (None, "花桥新村", "3", None, None)),
    ("花桥新村3幢", (None, "花桥新村", "3", None, None)),
    ("花桥新村3#楼", (None, "花桥新村", "3", None, None)),
    ("花桥新村３号楼", (None, "花桥新村", "3", None, None)),
    ("花桥新村十二栋", (None, "花桥新村", "12", None, None)),
    ("花桥新村十号楼", (None, "花桥新村", "10", None, None)),
    ("花桥新村二十三号楼", (None, "花桥新村", "23", None, None)),
    ("花桥新村九十九栋", (None, "花桥新村", "99", None, None)),
    ("花桥新村3-2-501", (None, "花桥新村", "3", "2", "501")),
    ("3-2-501", (None, None, "3", "2", "501")),
    ("三号楼", (None, None, "3", None, None)),
    ("3栋", (None, None, "3", None, None)),
    ("花桥新村三号楼二单元501室", (None, "花桥新村", "3", "2", "501")),
    ("花桥新村3栋2单元501室", (None, "花桥新村", "3", "2", "501")),
    ("永安小区４号楼２单元３０１", (None, "永安小区", "4", "2", "301")),
    ("永安小区 4号楼 2单元 301", (None, "永安小区", "4", "2", "301")),
    ("武汉市江岸区大智街道幸福村光明花园9号楼3单元102", ("幸福村", "光明花园", "9", "3", "102")),
    ("武汉市江岸区大智街道幸福二社区永安小区11#楼3单元102号", ("幸福二社区", "永安小区", "11", "3", "102")),
    ("幸福村花桥新村2期3号楼", ("幸福村", "花桥新村2期", "3", None, None)),
    ("光明花园2期3号楼2单元501", (None, "光明花园2期", "3", "2", "501")),
    ("二七花园十一栋", (None, "二七花园", "11", None, None)),   # numerals inside the compound name
    ("三眼桥里二号楼二单元101", (None, "三眼桥里", "2", "2", "101")),
    ("江岸区永安小区3号楼", (None, "永安小区", "3", None, None)),
    ("光明花园", (None, "光明花园", None, None, None)),
    (None, (None, None, None, None, None)),
]


@pytest.mark.parametrize(("raw", "parts"), ADDRESS_CASES)
def test_address(con, raw, parts):
    got = con.execute("select std_address(?::varchar)", [raw]).fetchone()[0]
    assert (got["community"], got["compound"], got["building"], got["unit"], got["room"]) == parts
    compound, building, unit, room = parts[1:]
    expected_key = None if compound is None else f"{compound}|{building or ''}|{unit or ''}|{room or ''}"
    assert got["key"] == expected_key


def test_address_prefixes(con):
    got = con.execute("select std_address('武汉市江岸区大智街道花桥新村7#楼3单元401号')").fetchone()[0]
    assert (got["city"], got["district"], got["street"]) == ("武汉市", "江岸区", "大智街道")


def test_address_variants_share_one_key(con):
    variants = ["花桥新村3号楼2单元501", "花桥新村3栋2单元501室", "花桥新村3幢2单元501",
                "花桥新村三号楼二单元501", "花桥新村3-2-501", "花桥新村3#楼2单元501号",
                "花桥新村３号楼２单元５０１", "武汉市江岸区大智街道花桥新村3号楼2单元501",
                "武汉市江岸区大智街道幸福村花桥新村3号楼2单元501"]
    keys = con.execute("select distinct std_address(a).key from unnest(?::varchar[]) t(a)",
                       [variants]).fetchall()
    assert keys == [("花桥新村|3|2|501",)]


@pytest.mark.parametrize(("raw", "number"), [
    ("3", "3"), ("03", "3"), ("三", "3"), ("十", "10"), ("十一", "11"), ("二十", "20"),
    ("二十三", "23"), ("九十九", "99"), ("两", "2"), ("五零一", "501"), ("", None),
])
def test_chinese_numerals(con, raw, number):
    assert con.execute("select std_cn_number(?)", [raw]).fetchone()[0] == number
