"""The analyst dashboard on the merged town, built from the analysts' published snapshot: self-contained,
no personal data, rendered in headless Chromium with its charts drawn, refused to community staff."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from urllib.parse import quote

import pytest
from PIL import Image

from onenet import pipeline
from tests.warehouse.conftest import Town
from tests.warehouse.village import copy_warehouse
from warehouse import audit_log
from warehouse.access import AccessDenied, Principal
from warehouse.identity import os_user


@pytest.fixture(scope="module")
def town(merged_town, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dash")
    town = Town(copy_warehouse(merged_town[1], folder / "town.duckdb"), folder / "published", folder / "exports",
                folder / "audit" / "access-log.jsonl")
    with pytest.MonkeyPatch.context() as mp:
        for var, value in (("ONENET_WAREHOUSE", town.warehouse), ("ONENET_PUBLISHED", town.published),
                           ("ONENET_EXPORTS", town.exports), ("ONENET_ACCESS_LOG", town.log)):
            mp.setenv(var, str(value))
        mp.delenv("ONENET_SERVING_URL", raising=False)
        town.publish()
        yield town


@pytest.fixture(scope="module")
def page(town):
    with pytest.MonkeyPatch.context() as mp:
        for var, value in (("ONENET_PUBLISHED", town.published), ("ONENET_EXPORTS", town.exports),
                           ("ONENET_ACCESS_LOG", town.log)):
            mp.setenv(var, str(value))
        return pipeline.dashboard(who=Principal(os_user(), "district_analyst"))


def test_the_page_is_the_analysts_own_and_logged(page, town):
    assert page == town.exports / "analyst" / "dashboard" / "index.html"
    assert stat.S_IMODE(page.stat().st_mode) == 0o640
    assert stat.S_IMODE(page.parent.stat().st_mode) == 0o750
    last = audit_log.tail(1, town.log)[0]
    assert (last["action"], last["role"], last["output"], last["outcome"]) == (
        "dashboard", "district_analyst", str(page), "allowed")


def test_the_page_needs_nothing_from_outside_and_holds_no_personal_data(page, town):
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html
    # inline scripts only (the filter): none loaded from a file or address
    assert html.count("<script") == 2 and not re.search(r"<script[^>]*\bsrc\s*=", html)
    assert html.count("<svg") >= 5 and '<table class="heat"' in html
    ids = [r[0] for r in town.oracle("select id_number from core.person where id_number is not null limit 200")]
    phones = [r[0] for r in town.oracle("select phone from core.person where phone is not null limit 200")]
    names = [r[0] for r in town.oracle("select name from core.person where length(name) >= 3 limit 200")]
    assert ids and phones and names
    assert not any(i in html for i in ids) and not any(p in html for p in phones)
    assert not any(n in html for n in names)
    persons, records = town.oracle("select count(distinct person_id), count(*) from core.person_source")[0]
    tickets = town.oracle("select count(*) from core.ticket")[0][0]
    # The de-duplication and ticket figures, read from the snapshot, are the warehouse's own.
    assert f"{persons:,}" in html and f"{records:,}" in html and f"{tickets:,}" in html


def test_community_staff_get_no_dashboard(town, monkeypatch):
    for var, value in (("ONENET_PUBLISHED", town.published), ("ONENET_EXPORTS", town.exports / "staff"),
                       ("ONENET_ACCESS_LOG", town.log)):
        monkeypatch.setenv(var, str(value))
    staff = Principal(os_user(), "community_staff", community=town.communities()[0][1])
    with pytest.raises(AccessDenied, match="analysts"):
        pipeline.dashboard(who=staff)
    assert not (town.exports / "staff").exists()
    last = audit_log.tail(1, town.log)[0]
    assert (last["action"], last["role"], last["outcome"]) == ("dashboard", "community_staff", "denied")


def test_rendered_in_chromium_without_console_errors_and_with_charts_drawn(page, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: run `make system-deps`"
    shot = tmp_path / "shot.png"
    run = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--enable-logging=stderr", "--v=0", "--window-size=1280,3200",
                          f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.exists(), run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          f"--user-data-dir={tmp_path / 'profile2'}", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<rect") > 10 and "<polyline" in dom
    image = Image.open(shot).convert("RGB")
    width, height = image.size
    # Chart colours (the palette's blue, orange and green) cover a real share of the page in each
    # third of it: the charts were drawn, not left blank.
    palette = {(0x2F, 0x6D, 0xB5), (0xE0, 0x7B, 0x39), (0x3A, 0x9A, 0x5B)}
    for top in range(0, height - height // 3 + 1, height // 3):
        band = image.crop((0, top, width, top + height // 3)).getcolors(maxcolors=1 << 20) or []
        coloured = sum(n for n, rgb in band if any(max(abs(a - b) for a, b in zip(rgb, p, strict=True)) < 24
                                                     for p in palette))
        assert coloured > 2000, (top, coloured)


def _tiles(html: str) -> dict[str, str]:
    return dict(re.findall(r'<div>([^<]+)<b>([^<]+)</b></div>', html.split('<div class="kpi">', 1)[1].split("</div></", 1)[0]
                           + "</div>"))


def test_tiles_and_tables_count_the_same_warnings(page, town):
    html = page.read_text(encoding="utf-8")
    [(label, shown)] = [(k, v) for k, v in _tiles(html).items() if "预警" in k]
    day, count = town.oracle("select max(day_on), count(*) filter (where day_on = (select max(day_on) "
                             "from mart.warnings)) from mart.warnings")[0]
    assert count and label == f"最近预警日 {day:%m-%d} 的预警" and int(shown.replace(",", "")) == count
    table = html.split("<th>日均阈值</th></tr>", 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == count and table.count(f"<td>{day:%m-%d}</td>") == count


def test_axis_ticks_are_round_and_only_risks_are_shaded(page):
    from decimal import Decimal

    html = re.sub(r"<script.*?</script>", "", page.read_text(encoding="utf-8"), flags=re.S)
    charts = re.findall(r"<svg.*?</svg>", html)
    assert charts
    for chart in charts:
        labels = re.findall(r'text-anchor="end" class="tick">([^<]+)<', chart)
        values = [Decimal(v.rstrip("%").replace(",", "")) for v in labels]
        steps = {b - a for a, b in zip(values, values[1:], strict=False)}
        assert values[0] == 0 and len(steps) == 1, labels
        step = steps.pop()
        assert step.normalize().as_tuple().digits[0] in (1, 2, 5) and step.normalize().as_tuple().digits[1:] in (
            (), (0,)), labels  # 1, 2 or 5 times a power of ten
    heat = html.split('<table class="heat"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr><th>[^<]+</th>(.*?)</tr>", heat)
    assert rows
    for row in rows:
        cells = re.findall(r"<td([^>]*)>", row)
        assert not cells[0] and not cells[1]  # residents, special groups: population, not shaded
        assert all("background" in c for c in cells[2:] if c)
        assert any("background" in c for c in cells[2:])


def _dom(chromium: str, url: str, profile) -> str:
    run = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                          f"--user-data-dir={profile}", "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert not [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line], run.stderr[-2000:]
    return run.stdout


def test_the_filter_by_street_community_and_month_works_offline_and_agrees_with_sql(page, town, tmp_path):
    """Chromium opens the page with a filter chosen (street, community, month in the address, as the
    selects set it); the filtered tiles and tables equal SQL on the analysts' snapshot."""
    import duckdb

    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: run `make system-deps`"
    con = duckdb.connect(str(town.published / "analyst" / "current" / "snapshot.duckdb"), read_only=True)
    try:
        (street, code, month), = con.execute(
            "select street_name, max(community_code), strftime(max(day_on), '%Y-%m') from mart.grid_daily "
            "group by 1 order by 1 limit 1").fetchall()
        last = con.execute("select max(day_on) from mart.grid_daily where community_code = ? "
                           "and strftime(day_on, '%Y-%m') = ?", [code, month]).fetchone()[0]
        expected = con.execute("""
            select sum(residents) filter (where day_on = $last), sum(new_tickets),
                   sum(open_cases) filter (where day_on = $last),
                   sum(yellow_codes + red_codes) filter (where day_on = $last), sum(data_issues)
            from mart.grid_daily where community_code = $code and strftime(day_on, '%Y-%m') = $month""",
            {"last": last, "code": code, "month": month}).fetchone()
        warnings = con.execute("select count(*) from mart.warnings where scope_type in ('grid', 'community') "
                               "and left(scope_key, 12) = ? and strftime(day_on, '%Y-%m') = ?", [code, month]).fetchone()[0]
        all_tickets = con.execute("select sum(new_tickets) from mart.grid_daily where strftime(day_on, '%Y-%m') = ?",
                                  [month]).fetchone()[0]
    finally:
        con.close()
    url = f"{page.as_uri()}#street={quote(street)}&community={code}&month={month}"
    dom = _dom(chromium, url, tmp_path / "p1")
    tiles = dict(re.findall(r'<div data-k="(\w+)">[^<]*<b>([\d,]+)</b>', dom))
    shown = {k: int(v.replace(",", "")) for k, v in tiles.items()}
    assert (shown["residents"], shown["tickets"], shown["open_cases"], shown["codes"], shown["issues"]) == expected
    assert shown["warnings"] == warnings
    # the table under the tiles counts the same: one community row with the tiles' figures
    [row] = re.findall(r'<tr data-community="([^"]+)">(.*?)</tr>', dom)
    cells = [int(v.replace(",", "")) for v in re.findall(r"<td>([\d,]+)</td>", row[1])]
    assert row[0] == code and (cells[0], cells[2], cells[3], cells[4] + cells[5], cells[6]) == expected
    warnings_table = dom.split('id="f-warnings">', 1)[1].split("</table>", 1)[0]
    assert warnings_table.count("<tr>") - 1 == warnings
    assert re.search(rf'<option value="{code}" selected', dom)
    # the filtered chart's axis is on round steps too
    chart = dom.split('id="f-chart">', 1)[1].split("</svg>", 1)[0]
    ticks = [int(v.replace(",", "")) for v in re.findall(r'text-anchor="end" class="tick">([^<]+)<', chart)]
    assert ticks[0] == 0 and len({b - a for a, b in zip(ticks, ticks[1:], strict=False)}) == 1
    assert str(ticks[1]).rstrip("0") in ("1", "2", "5"), ticks
    # No filter: the whole district for the month, which differs from the one community.
    whole = dict(re.findall(r'<div data-k="(\w+)">[^<]*<b>([\d,]+)</b>', _dom(chromium, f"{page.as_uri()}#month={month}",
                                                                            tmp_path / "p2")))
    assert int(whole["tickets"].replace(",", "")) == all_tickets > shown["tickets"]


def test_choosing_in_the_selects_filters_the_page(page, town, tmp_path):
    """The selects themselves drive the filter: a copy of the page with a script that picks a
    community and a month in them, as a user would, shows that community's figures."""
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: run `make system-deps`"
    code, month = town.oracle("select max(community_code), strftime(max(day_on), '%Y-%m') from mart.grid_daily")[0]
    tickets = town.oracle("select sum(new_tickets) from mart.grid_daily where community_code = ? "
                          "and strftime(day_on, '%Y-%m') = ?", [code, month])[0][0]
    pick = ("<script>function pick(id, v){var s=document.getElementById(id);s.value=v;"
            "s.dispatchEvent(new Event('change'));}"
            f"pick('f-month','{month}');pick('f-community','{code}');</script>")
    copy = tmp_path / "picked.html"
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", pick + "</body>"), encoding="utf-8")
    dom = re.sub(r"<script.*?</script>", "", _dom(chromium, copy.as_uri(), tmp_path / "p"), flags=re.S)
    tiles = dict(re.findall(r'<div data-k="(\w+)">[^<]*<b>([\d,]+)</b>', dom))
    assert int(tiles["tickets"].replace(",", "")) == tickets
    assert re.findall(r'<tr data-community="([^"]+)">', dom) == [code]
