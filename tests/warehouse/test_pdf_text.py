"""The test helper that reads printed text sizes from a PDF (tests/warehouse/pdf_text.py)."""

from __future__ import annotations

import random
import string
import zlib
from collections import Counter

from tests.warehouse.pdf_text import page_text_sizes


def _pdf(content: bytes) -> bytes:
    """A one-page PDF laid out as LibreOffice writes it: the page's content a Flate stream whose
    length is an indirect object, `endstream` on the line after the data."""
    data = zlib.compress(content)
    return (b"%PDF-1.4\n1 0 obj\n<</Type/Pages/Kids[2 0 R]/Count 1>>\nendobj\n"
            b"2 0 obj\n<</Type/Page/Parent 1 0 R/MediaBox[0 0 842 595]/Contents 3 0 R>>\nendobj\n"
            b"3 0 obj\n<</Length 4 0 R/Filter/FlateDecode>>\nstream\n" + data + b"\nendstream\nendobj\n"
            b"4 0 obj\n" + str(len(data)).encode() + b"\nendobj\ntrailer\n<</Root 1 0 R>>\n%%EOF\n")


def test_a_compressed_page_whose_data_ends_in_a_line_feed_byte_is_read_whole():
    # Compressed data ends in its Adler-32 checksum, one of whose bytes is LF about once in 256
    # streams: the helper stripped it as if it were the end of line before `endstream` (CI, stop 26).
    letters = random.Random(26)
    for n in range(5000):
        text = "".join(letters.choice(string.ascii_letters) for _ in range(20))
        content = f"BT /F1 {8 + n % 5}.5 Tf ({text}) Tj ET BT /F1 11 Tf (x) Tj ET".encode()
        if zlib.compress(content).endswith((b"\n", b"\r")):
            break
    else:
        raise AssertionError("no content whose compressed form ends in CR or LF")
    assert page_text_sizes(_pdf(content)) == [Counter({8 + n % 5 + 0.5: 1, 11.0: 1})]
