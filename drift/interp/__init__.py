"""Interpretability of an edit: activation patching, tracing, attention drift, the audit, the HTML
report.

Builds on drift.evaluation, drift.editors and drift.model.
"""
