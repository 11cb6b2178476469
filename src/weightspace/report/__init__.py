"""Reporting: the summary page, tables, figures and HTML pages."""
