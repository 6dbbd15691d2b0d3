"""The analyst dashboard: one static HTML page with inline SVG charts, readable with no server."""
