"""Utilities every layer may use: the cache and atomic writes, threads, progress, reprs.

Imports no other part of drift.
"""
