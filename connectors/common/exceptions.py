"""Named errors of the connectors; each message names the source, the position and what to do."""

from __future__ import annotations


class ConnectorError(RuntimeError):
    """Base of every connector failure; the load is rolled back and recorded as failed."""


class SourceUnavailable(ConnectorError):
    """The source did not answer usefully after every retry."""


class InvalidPage(ConnectorError):
    """A page stayed truncated or invalid after every retry."""


class SchemaDrift(ConnectorError):
    """A required column is missing or changed type; nothing of the load is landed."""


class ConfigurationError(ConnectorError):
    """The connection settings are missing or malformed."""
