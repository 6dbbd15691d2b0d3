"""The analyst dashboard on the merged town: self-contained, rendered in headless Chromium, charts drawn."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from PIL import Image

from warehouse import db
from warehouse.dashboard.build import build_dashboard


@pytest.fixture(scope="module")
def page(merged_town, tmp_path_factory):
    con = db.connect(merged_town[1], read_only=True)
    try:
        return build_dashboard(con, tmp_path_factory.mktemp("dash") / "index.html")
    finally:
        con.close()


def test_the_page_needs_nothing_from_outside_and_holds_no_personal_data(page, merged_town):
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "<script" not in html
    assert html.count("<svg") >= 5 and '<table class="heat"' in html
    con = db.connect(merged_town[1], read_only=True)
    try:
        ids = [r[0] for r in con.execute("select id_number from core.person where id_number is not null limit 200").fetchall()]
        phones = [r[0] for r in con.execute("select phone from core.person where phone is not null limit 200").fetchall()]
        persons = con.execute("select count(distinct person_id) from core.person_source").fetchone()[0]
    finally:
        con.close()
    assert not any(i in html for i in ids) and not any(p in html for p in phones)
    assert f"{persons:,}" in html  # the de-duplication figure is the warehouse's own


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
