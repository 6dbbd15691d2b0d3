"""Constants of the health-code file drop: file names, headers, the entity and the completeness defaults."""

from __future__ import annotations

import re

import pyarrow as pa

from connectors.common.landing import Entity

SOURCE = "health_codes"
# AIRFLOW_CONN_ONENET_HEALTH_CODES=file:///abs/path/to/drop; the embedded default (the simulated
# district's drop folder) comes from onenet.settings.embedded_uri("health_codes").
CONN_ID = "onenet_health_codes"

# The platform's Chinese headers and the snake_case columns they land as, in export order.
HEADERS: dict[str, str] = {
    "序号": "record_no",
    "姓名": "name",
    "身份证号": "id_number",
    "手机号码": "phone",
    "健康码状态": "code_color",
    "赋码时间": "color_since",
    "疫苗接种剂次": "vaccine_doses",
    "最近核酸采样时间": "last_test_at",
    "核酸检测结果": "last_test_result",
    "所属社区": "community",
}
TIME_COLUMNS: tuple[str, ...] = ("color_since", "last_test_at")
DERIVED_COLUMNS: tuple[str, ...] = ("export_date", "file_name")  # from the file name, not its content

# Every column lands as text: ID numbers and phones must never become numbers.
EXPORTS = Entity(SOURCE, "exports", key=("export_date", "record_no"),
                 required={c: pa.string() for c in (*HEADERS.values(), *DERIVED_COLUMNS)})

# 健康码日报_YYYYMMDD.csv|xlsx, or a re-send 健康码日报_YYYYMMDD(重发).csv (full-width brackets tolerated).
FILE_NAME = re.compile(r"^健康码日报_(?P<date>\d{8})(?P<resend>[(（]重发\d*[)）])?\.(?P<ext>csv|xlsx)$",
                       re.IGNORECASE)
SHEET_NAME = "健康码导出"

# The nightly re-check (connectors.health_codes.reconcile, DAG onenet_reconcile_health_codes), Beijing
# time: a file replaced in place with its old size and mtime (cp -p, rsync -t), or restored to
# earlier bytes, escapes the sync's size + mtime look; the re-check opens only files whose change
# time moved, so a quiet night costs a directory listing. After the 00:00 sync and the registry's 01:30.
RECONCILE_SCHEDULE = "30 2 * * *"

# A file is taken once its size and mtime stay unchanged across two looks this far apart.
STABLE_SECONDS = 2.0
# A file modified within this many seconds that is not readable yet (a CSV without its final line
# break, bytes that do not decode, an XLSX that is not a whole zip) is waited for; an older one is
# judged as it is: read if it can be, otherwise the load fails naming it.
SETTLE_SECONDS = 300.0

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SERIAL = r"^\d+(\.\d+)?$"                 # an Excel serial day number written as text
EXCEL_EPOCH_UNIX_DAYS = -25569            # 1899-12-30 (Excel day 0) in days since 1970-01-01
MAX_SERIAL = 2958466.0                    # 9999-12-31, the last day Excel knows

# Files are read in blocks of whole lines of about this many bytes (an XLSX in chunks of rows), and
# the rows are landed whenever this many are waiting (DuckDB writes an uncommitted insert of a few
# row groups straight to the file; smaller ones it keeps in memory): memory stays bounded whatever
# a file's size. Measured on a 222 MB GB18030 file: bench/README.md.
READ_BLOCK_BYTES = 8 << 20
XLSX_CHUNK_ROWS = 50_000
LAND_ROWS = 300_000
