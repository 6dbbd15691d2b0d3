"""Report templates: a department's recurring form declared once, filled from the warehouse every day."""

from warehouse.reports.templates_engine import Template, TemplateError, fill, load_template
from warehouse.reports.workbook import ReportResult, write_report

__all__ = ["ReportResult", "Template", "TemplateError", "fill", "load_template", "write_report"]
