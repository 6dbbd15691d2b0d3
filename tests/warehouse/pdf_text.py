"""What a PDF that LibreOffice printed shows: the size of every piece of text on every page.

LibreOffice writes each page's content as a Flate-compressed stream where text is drawn with
`<size> Tf` at its printed size (a sheet scaled to 60% draws 11 pt text as `6.6 Tf`), so the sizes
are what a reader holds on paper. No PDF library is needed (none is installed here).
"""

from __future__ import annotations

import re
import zlib
from collections import Counter

_OBJECT = re.compile(rb"(\d+) 0 obj(.*?)endobj", re.S)
_PAGE = re.compile(rb"/Type\s*/Page(?![s\w])")
_CONTENTS = re.compile(rb"/Contents\s*(\[[^\]]*\]|\d+ 0 R)")
_FONT_SIZE = re.compile(rb"([\d.]+) Tf")


def _stream(obj: bytes) -> bytes:
    head, _, rest = obj.partition(b"stream")
    data = rest.removeprefix(b"\r").removeprefix(b"\n")  # the one end of line after `stream`
    if b"FlateDecode" in head:
        # The decompressor stops where the compressed data ends and leaves `endstream` over. Not
        # rstrip: compressed data may end in a CR or LF byte of its own (a CI run met one).
        return zlib.decompressobj().decompress(data)
    return data[: data.rindex(b"endstream")].rstrip(b"\r\n")


def page_text_sizes(pdf: bytes) -> list[Counter]:
    """For each page, how many text runs are drawn at each size (points, as printed)."""
    objects = {int(m.group(1)): m.group(2) for m in _OBJECT.finditer(pdf)}
    pages = []
    for number in sorted(objects):
        body = objects[number]
        if not _PAGE.search(body):
            continue
        sizes: Counter = Counter()
        contents = _CONTENTS.search(body)
        for ref in re.findall(rb"(\d+) 0 R", contents.group(1) if contents else b""):
            sizes.update(round(float(s), 2) for s in _FONT_SIZE.findall(_stream(objects[int(ref)])))
        pages.append(sizes)
    return pages
