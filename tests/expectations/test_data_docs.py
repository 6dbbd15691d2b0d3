"""Data Docs offline and truthful (issue #16): headless Chromium with the network cut, every custom
expectation as a sentence, a batch that passed with warnings shown as such."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import great_expectations as gx
import great_expectations.expectations as gxe
import pytest

from expectations import data_docs
from expectations.casts import ExpectColumnValuesToCastTo
from expectations.engine import build_docs, gx_context, validate_table
from expectations.identity import (
    ExpectColumnValuesToBeValidMobileNumber,
    ExpectColumnValuesToBeValidResidentId,
)
from expectations.references import ExpectColumnValuesToExistInTable
from expectations.uniqueness import ExpectCompoundKeyToBeUnique

# Chromium's own background services (time sync, component updates, accounts): not the page's.
BROWSER_OWN = re.compile(r"^https?://([a-z0-9-]+\.)*(google\.com|googleapis\.com|gstatic\.com)/")

TABLE = """
create schema raw;
create schema ref;
create table ref.division_codes as select * from (values ('110105')) t(code);
create table raw.grids as select 'G' || r as code from range(0, 3) t(r);
create table raw.people as
select r as _row_id, 'P' || r as person_id, 'G' || (r % 3) as grid_code,
       case when r = 4 then '2026-02-30' else '2026-01-0' || (r % 9 + 1) end as moved_in_on,
       '1380000' || lpad(r::varchar, 4, '0') as phone, '11010519491231002X' as id_number
from range(1, 21) t(r);
"""


def _suites() -> tuple[gx.ExpectationSuite, gx.ExpectationSuite]:
    warned = gx.ExpectationSuite("people_warned", expectations=[
        gxe.ExpectColumnValuesToNotBeNull(column="person_id", meta={"severity": "critical"}),
        ExpectColumnValuesToExistInTable(column="grid_code", ref_table="raw.grids", ref_column="code",
                                         meta={"severity": "critical"}),
        ExpectCompoundKeyToBeUnique(column="person_id", with_columns=["grid_code"], meta={"severity": "critical"}),
        ExpectColumnValuesToBeValidMobileNumber(column="phone", meta={"severity": "critical"}),
        ExpectColumnValuesToBeValidResidentId(column="id_number", meta={"severity": "critical"}),
        # 2026-02-30 does not convert: a warning only, so the batch passed, with a warning.
        ExpectColumnValuesToCastTo(column="moved_in_on", type_name="date", meta={"severity": "warning"}),
    ])
    failed = gx.ExpectationSuite("people_failed", expectations=[
        ExpectColumnValuesToCastTo(column="moved_in_on", type_name="date", meta={"severity": "critical"}),
    ])
    return warned, failed


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A Data Docs site with one batch that passed with warnings and one that failed."""
    home = tmp_path_factory.mktemp("docs")
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute(TABLE)
    context = gx_context(home / "gx")
    warned, failed = _suites()
    outcomes = {s.name: validate_table(context, con, "raw.people", s, run_name=s.name) for s in (warned, failed)}
    con.close()
    index = build_docs(context)
    return index, outcomes, context


def _chromium(page: Path, profile: Path) -> tuple[str, list[str], list[str]]:
    """Load `page` headless with every name unresolvable and a dead proxy: (DOM after scripts, console lines,
    URLs the page asked the network for)."""
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: run `make system-deps`"
    netlog = profile.with_suffix(".netlog.json")
    run = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", f"--user-data-dir={profile}",
         f"--log-net-log={netlog}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    urls = sorted({u for u in re.findall(r'"url":"([^"]+)"', netlog.read_text(errors="replace"))
                   if u.startswith(("http:", "https:", "ws:", "wss:")) and not BROWSER_OWN.match(u)})
    return run.stdout, console, urls


def test_every_page_renders_offline_with_no_request_leaving_the_machine(site, tmp_path):
    index, outcomes, _ = site
    pages = sorted(index.parent.rglob("*.html"))
    assert len(pages) == 5  # index, two suites, two validation results
    for n, page in enumerate(pages):
        dom, console, urls = _chromium(page, tmp_path / f"profile{n}")
        assert console == [], (page, console)
        assert urls == [], (page, urls)
        assert "static/vendor/" in dom, page  # its CSS and JS came from the vendored files
        if "expectations" not in page.parent.name:  # index and results: bootstrap-table drew their rows
            assert 'data-index="0"' in dom, page
    dom, _, _ = _chromium(index, tmp_path / "index")
    assert len(re.findall(r"<tr[^>]*data-index=", dom)) == 4  # the results list: 2 validation results, 2 suites


def test_without_localising_the_same_site_is_broken_offline(site, tmp_path):
    """What the issue saw (and what the test above would catch): GE's own pages load from CDNs."""
    index, _, context = site
    raw = tmp_path / "raw"
    shutil.copytree(index.parent, raw)
    context.build_data_docs()  # GE's untouched pages, into the built site
    shutil.copy(index, raw / "index.html")
    dom, console, urls = _chromium(raw / "index.html", tmp_path / "profile")
    build_docs(context)  # leave the module's site as it was
    assert any("cdn.jsdelivr.net" in u or "unpkg.com" in u for u in urls)
    assert console and 'data-index="0"' not in dom


def test_a_batch_that_passed_with_warnings_says_so_and_a_failed_one_does_not(site, tmp_path):
    index, outcomes, _ = site
    warned, failed = outcomes["people_warned"], outcomes["people_failed"]
    assert warned.success is False and failed.success is False  # GE's own verdict on both
    warned_page = Path(warned.docs_url.removeprefix("file://"))
    failed_page = Path(failed.docs_url.removeprefix("file://"))
    dom, _, _ = _chromium(warned_page, tmp_path / "w")
    assert "Passed with warnings" in dom and "fa-times text-danger" not in dom.split("Status:")[1][:300]
    dom, _, _ = _chromium(failed_page, tmp_path / "f")
    assert "Status:</span> <i class=\"fas fa-times text-danger\" aria-hidden=\"true\"></i> Failed" in dom
    text = index.read_text(encoding="utf-8")
    assert text.count("passed with warnings") == 1


def test_every_custom_expectation_renders_as_a_sentence(site):
    index, _, _ = site
    suite_page = (index.parent / "expectations" / "people_warned.html").read_text(encoding="utf-8")
    for sentence in ("values must exist in raw.grids.code", "no two rows share the key (the column + grid_code)",
                     "values must be mainland mobile numbers", "values must be valid resident ID numbers",
                     "values must convert to date, as staging casts them"):
        assert sentence.lower() in suite_page.lower(), sentence
    assert "**{" not in suite_page and "batch_id" not in suite_page  # GE's raw-kwargs fallback


def test_vendored_files_are_pinned_and_unaltered(tmp_path):
    manifest = data_docs.verify()
    specs = {spec for spec, _ in data_docs.ASSETS.values()}
    assert all(re.fullmatch(r"@?[\w./-]+@\d+\.\d+\.\d+", s) for s in specs)  # exact versions only
    assert len(data_docs.ASSETS) == 16 and len(manifest) == 20
    first = next(iter(manifest))
    saved = (data_docs.ASSETS_DIR / first).read_bytes()
    try:
        (data_docs.ASSETS_DIR / first).write_bytes(saved + b"/* altered */")
        with pytest.raises(data_docs.DataDocsAssetMissing, match="make data-docs-assets"):
            data_docs.verify()
    finally:
        (data_docs.ASSETS_DIR / first).write_bytes(saved)
    assert json.loads(data_docs.MANIFEST.read_text()) == manifest


def test_an_incremental_build_renders_only_this_runs_pages_and_keeps_earlier_warnings(tmp_path):
    """The validate step builds only its own results' pages (issue #19): earlier pages are not
    rendered again, earlier warnings stay marked on the index, every new page is offline."""
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    con.execute(TABLE)
    context = gx_context(tmp_path / "gx")
    warned, failed = _suites()
    first = [validate_table(context, con, "raw.people", s, run_name=f"first-{s.name}") for s in (warned, failed)]
    index = build_docs(context, only=first)  # a site not built yet: everything
    assert data_docs.warned_pages_known(index)
    old_page = Path(first[0].docs_url.removeprefix("file://"))
    old_page.write_text(old_page.read_text(encoding="utf-8") + "<!-- not rendered again -->", encoding="utf-8")

    second = validate_table(context, con, "raw.people", warned, run_name="second")
    con.close()
    assert build_docs(context, only=[second]) == index
    assert old_page.read_text(encoding="utf-8").endswith("<!-- not rendered again -->")
    new_page = Path(second.docs_url.removeprefix("file://")).read_text(encoding="utf-8")
    assert "Passed with warnings" in new_page and "static/vendor/" in new_page
    text = index.read_text(encoding="utf-8")
    assert text.count("passed with warnings") == 2  # the first run's row too, though not read again
    assert "cdn.jsdelivr.net" not in text and "unpkg.com" not in text and "cdn.jsdelivr.net" not in new_page
    assert text.count("_table_row_link_path': 'validations/") == 3

    build_docs(context)  # a full rebuild agrees
    assert index.read_text(encoding="utf-8").count("passed with warnings") == 2
