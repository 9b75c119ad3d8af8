"""The hooked model: loading, the adapter over TransformerLens, sites and weights, recording, scoring,
tiny test models.

Imports only drift.util and drift.data.
"""
