"""Scoring edits: evaluate and its settings (``spec.EvalSpec``), the metrics, sequential editing,
comparing finished runs.

Builds on drift.model and drift.editors.
"""
