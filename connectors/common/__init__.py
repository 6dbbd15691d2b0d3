"""Machinery every connector shares: configuration, HTTP client, landing, load bookkeeping."""
