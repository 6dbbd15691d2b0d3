"""Data Docs that work offline: the site's CSS/JS from pinned npm packages vendored here, not from CDNs.

Great Expectations' templates load 16 stylesheets and scripts from five CDNs; a district network
has no Internet, so its pages came up without tables or icons. ASSETS maps each CDN URL to the
file of an exact npm package version; the files live under `expectations/data_docs_assets/`
(re-fetch with `make data-docs-assets`, which runs `npm pack` and checks every file against the
sha256 in MANIFEST.json). `localise(site)` copies them into the built site and rewrites every
page's URLs to relative paths, so the site opens from `file://` with no request leaving the
machine. `vega@5`, `vega-lite@5` and `vega-embed@6` (unpinned in GE's templates) are pinned to
the newest of those majors on the day they were vendored.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ASSETS_DIR = Path(__file__).resolve().parent / "data_docs_assets"
MANIFEST = ASSETS_DIR / "MANIFEST.json"
SITE_FOLDER = "static/vendor"

# CDN URL in GE's templates -> (npm package@version, file inside the package)
ASSETS: dict[str, tuple[str, str]] = {
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        ("@forevolve/bootstrap-dark@1.1.0", "dist/css/bootstrap-prefers-dark.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        ("bootstrap-datepicker@1.9.0", "dist/css/bootstrap-datepicker.min.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        ("bootstrap-datepicker@1.9.0", "dist/js/bootstrap-datepicker.min.js"),
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        ("@fortawesome/fontawesome-free@6.6.0", "css/all.min.css"),
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js":
        ("popper.js@1.12.9", "dist/umd/popper.min.js"),
    "https://code.jquery.com/jquery-3.7.1.min.js": ("jquery@3.7.1", "dist/jquery.min.js"),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css":
        ("bootstrap@4.3.1", "dist/css/bootstrap.min.css"),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js":
        ("bootstrap@4.3.1", "dist/js/bootstrap.min.js"),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        ("bootstrap-table@1.19.0", "dist/extensions/filter-control/bootstrap-table-filter-control.css"),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        ("bootstrap-table@1.19.0", "dist/extensions/filter-control/bootstrap-table-filter-control.min.css"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        ("bootstrap-table@1.19.1", "dist/bootstrap-table.min.css"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        ("bootstrap-table@1.19.1", "dist/bootstrap-table.min.js"),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        ("bootstrap-table@1.19.1", "dist/extensions/filter-control/bootstrap-table-filter-control.min.js"),
    "https://cdn.jsdelivr.net/npm/vega@5": ("vega@5.33.1", "build/vega.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-lite@5": ("vega-lite@5.23.0", "build/vega-lite.min.js"),
    "https://cdn.jsdelivr.net/npm/vega-embed@6": ("vega-embed@6.29.0", "build/vega-embed.min.js"),
}
# Files a vendored stylesheet loads by a relative URL (Font Awesome's ../webfonts/).
EXTRA_FILES: dict[str, tuple[str, ...]] = {
    "@fortawesome/fontawesome-free@6.6.0": tuple(
        f"webfonts/fa-{name}.{ext}" for name in ("brands-400", "regular-400", "solid-900", "v4compatibility")
        for ext in ("woff2",)),  # the CSS lists woff2 first; every browser the staff use reads it
}


_GE_WEB_ASSET = re.compile(r"https://great-expectations-web-assets\.s3[^\"'/]*/([\w.-]+)(?:\?[^\"']*)?")


_VENDOR_TAG = re.compile(r"<(?:script|link)\b[^>]*static/vendor/[^>]*>")
_SRI_ATTRS = re.compile(r"\s+(?:integrity|crossorigin)(?:=(?:\"[^\"]*\"|'[^']*'|[^\s>]*))?")


def _local_image(match: re.Match[str], *, root: Path, page: Path) -> str:
    image = root / "static" / "images" / match.group(1)
    return Path(os.path.relpath(image, page.parent)).as_posix() if image.is_file() else ""


class DataDocsAssetMissing(RuntimeError):
    """A vendored Data Docs file is missing or altered; `make data-docs-assets` restores it."""


def local_path(spec: str, file: str) -> str:
    """Where a package's file lives under data_docs_assets/ and the site's static/vendor/."""
    return f"{spec.replace('/', '__')}/{file}"


def _files() -> list[tuple[str, str]]:
    pairs = {(spec, file) for spec, file in ASSETS.values()}
    pairs |= {(spec, f) for spec, files in EXTRA_FILES.items() for f in files}
    return sorted(pairs)


def fetch(npm: str = "npm") -> dict[str, str]:
    """`npm pack` every pinned package, extract the files we use, write MANIFEST.json (sha256 per file)."""
    manifest: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        specs = sorted({spec for spec, _ in _files()})
        subprocess.run([npm, "pack", "--silent", *specs], cwd=tmp, check=True, capture_output=True)
        tarballs = {p.name: p for p in Path(tmp).glob("*.tgz")}
        for spec, file in _files():
            name, version = spec.rsplit("@", 1)
            tgz = tarballs[f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"]
            with tarfile.open(tgz) as tar:
                data = tar.extractfile(f"package/{file}").read()  # type: ignore[union-attr]
            target = ASSETS_DIR / local_path(spec, file)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            manifest[local_path(spec, file)] = hashlib.sha256(data).hexdigest()
    MANIFEST.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def verify() -> dict[str, str]:
    """Every vendored file present with its manifest's sha256; raises DataDocsAssetMissing otherwise."""
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    for spec, file in _files():
        rel = local_path(spec, file)
        path = ASSETS_DIR / rel
        if rel not in manifest or not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != manifest[rel]:
            raise DataDocsAssetMissing(f"Data Docs asset {rel} is missing or altered; run `make data-docs-assets`")
    return manifest


def localise(site_index: Path, since: float | None = None) -> list[Path]:
    """Copy the vendored files into the site next to `site_index` and point every page at them.

    Returns the pages rewritten. Idempotent: a page already pointing at local files is left as is.
    `since` (a time.time()): only the pages written since then are read (an incremental build), and
    the vendored files are copied only if the site lacks them.
    """
    manifest = verify()
    root = Path(site_index).parent
    vendor = root / SITE_FOLDER
    if since is None or not all((vendor / rel).is_file() for rel in manifest):
        shutil.copytree(ASSETS_DIR, vendor, dirs_exist_ok=True, ignore=shutil.ignore_patterns("MANIFEST.json"))
    changed = []
    pages = root.rglob("*.html")
    if since is not None:
        pages = (p for p in pages if not p.is_relative_to(vendor) and p.stat().st_mtime >= since)
    for page in pages:
        text = page.read_text(encoding="utf-8")
        new = text
        for url, (spec, file) in ASSETS.items():
            for quoted in (f'"{url}"', f"'{url}'"):
                if quoted in new:
                    rel = os.path.relpath(vendor / local_path(spec, file), page.parent)
                    new = new.replace(quoted, quoted[0] + Path(rel).as_posix() + quoted[0])
        # GE's logo comes from its S3 bucket with the context's id in the query (a tracking
        # request): the site ships the same image under static/images.
        new = _GE_WEB_ASSET.sub(functools.partial(_local_image, root=root, page=page), new)
        # A local file is not cross-origin: `crossorigin` would make Chromium refuse it on file://
        # (origin null), and its SRI hash is replaced by MANIFEST.json's check when copying.
        new = _VENDOR_TAG.sub(lambda m: _SRI_ATTRS.sub("", m.group(0)), new)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed


# GE renders any failed expectation as a failed batch. The pipeline passes a batch whose only
# failures are warnings (meta severity "warning"): every row reaches staging. Its pages say so.
PAGE_FAILED = '<i class="fas fa-times text-danger" aria-hidden="true"></i> Failed'
PAGE_WARNED = ('<i class="fas fa-exclamation-triangle text-warning" aria-hidden="true"></i> '
               'Passed with warnings')
INDEX_FAILED = '<i class="fas fa-times text-danger ge-failed-icon" ></i>'
INDEX_WARNED = ('<i class="fas fa-exclamation-triangle text-warning ge-warning-icon" '
                'title="Passed with warnings"></i> passed with warnings')


def passed_with_warnings(result: Any) -> bool:
    """Failed in GE's terms, but every failed expectation is a warning (none raised): the pipeline passed it."""
    failed = [r for r in result.results if not r.success]
    return bool(failed) and all(
        not (r.exception_info or {}).get("raised_exception")
        and ((r.expectation_config.meta or {}) if r.expectation_config else {}).get("severity", "critical") == "warning"
        for r in failed)


WARNED_PAGES = "onenet-warned-pages.json"  # the site's pages of batches that passed with warnings


def warned_pages_known(site_index: Path) -> bool:
    """Whether the site lists its passed-with-warnings pages (written by every mark_warnings)."""
    return (Path(site_index).parent / WARNED_PAGES).is_file()


def mark_warnings(context: Any, site_index: Path, new_results: list[Any] | None = None) -> list[Path]:
    """Make the pages of every batch that passed with warnings say so (the batch page and its index row).

    With `new_results` (the keys of the results just rendered, an incremental build), only those
    results are read; the index rows of earlier ones come from the site's list of such pages
    (WARNED_PAGES), since GE rebuilds the index from scratch each time. Without, every stored
    result is read and the list is written anew.
    """
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    root = Path(site_index).parent
    listing = root / WARNED_PAGES
    store = context.validation_results_store
    warned: list[str] = []
    if new_results is not None and listing.is_file():
        warned = json.loads(listing.read_text(encoding="utf-8"))
    marked = []
    for key in store.list_keys() if new_results is None else new_results:
        result = store.get(key)
        if result.success or not passed_with_warnings(result):
            continue
        urls = context.get_docs_sites_urls(resource_identifier=key, only_if_exists=True)
        pages = [Path(url2pathname(urlparse(u["site_url"]).path)) for u in urls if u.get("site_url")]
        for page in (p for p in pages if p.is_file() and root in p.parents):
            text = page.read_text(encoding="utf-8")
            if PAGE_FAILED in text:
                page.write_text(text.replace(PAGE_FAILED, PAGE_WARNED), encoding="utf-8")
                marked.append(page)
            if page.relative_to(root).as_posix() not in warned:
                warned.append(page.relative_to(root).as_posix())
    index = site_index.read_text(encoding="utf-8")
    for rel in warned:
        link = f"'_table_row_link_path': '{rel}'"
        at = index.find(link)
        if at >= 0:
            start = index.rfind("{'validation_success'", 0, at)
            row = index[start:at].replace(INDEX_FAILED, INDEX_WARNED)
            index = index[:start] + row + index[at:]
    site_index.write_text(index, encoding="utf-8")
    tmp = listing.with_suffix(".tmp")
    tmp.write_text(json.dumps(warned, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, listing)
    return marked


if __name__ == "__main__":  # make data-docs-assets
    written = fetch(*(sys.argv[1:2] or ["npm"]))
    print(f"{len(written)} files vendored under {ASSETS_DIR}")
