"""Hotline (12345) simulator: an HTTP work-order API with token auth, paging, rate limit and faults."""
