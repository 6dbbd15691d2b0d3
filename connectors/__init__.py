"""Source connectors: extract from each silo and land raw rows (issue: connectors)."""
