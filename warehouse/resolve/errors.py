"""Named errors of the resolver."""

from __future__ import annotations


class ResolverConfigError(ValueError):
    """A resolver configuration is incomplete or inconsistent; the message names the field to fix."""


class ResolveError(RuntimeError):
    """A resolver run cannot proceed (missing input table, empty input…); the message says what to do."""
