"""Report templates: a department's recurring form declared once, filled from the warehouse every day."""

from warehouse.reports.templates_engine import Template, TemplateError, fill, load_template

__all__ = ["Template", "TemplateError", "fill", "load_template"]
