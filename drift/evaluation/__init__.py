"""Scoring edits: evaluate, the metrics, sequential editing, comparing finished runs.

Builds on drift.model and drift.editors.
"""
