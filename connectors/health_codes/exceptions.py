"""Errors of the health-code drop beyond connectors.common.exceptions: a file that cannot be read at all."""

from __future__ import annotations

from connectors.common.exceptions import ConnectorError


class UnreadableFile(ConnectorError):
    """The whole file cannot be read (bytes that decode as nothing, a header that is not the
    export's, a zip that is no workbook). The connector sets it aside in meta.quarantined_files
    and lands the rest of the drop; `line` (1-based) and `byte_offset` (0-based) say where, when known.
    """

    def __init__(self, message: str, *, line: int | None = None, byte_offset: int | None = None):
        super().__init__(message)
        self.line = line
        self.byte_offset = byte_offset
