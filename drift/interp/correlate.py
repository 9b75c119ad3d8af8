"""Pearson correlation of drift factors with failure (main paper Fig. 4, Tables 2 and 4).

The paper reports Pearson's ρ with its two-sided p over prompt rows; :func:`pearson` gives the
same (``rho``, ``p``, ``n`` rows). Rows of one case share its edit, so that ``p`` counts up to four
rows of a case as independent evidence and comes out too small. Each result therefore also
carries the correlation of the *case means* (each case's mean factor against its mean target):
``rho_cases`` with its p and 95% Fisher interval over ``cases`` independent cases, the
conservative reading. Rows without a ``case_id`` are their own case.

Example:
    >>> rows = [{"case_id": c, "kl_drift": x, "p_edit": y} for c, x, y in
    ...         [(1, 0.1, 0.2), (1, 0.3, 0.3), (2, 0.5, 0.6), (3, 0.3, 0.3), (4, 0.7, 0.9)]]
    >>> r = pearson(rows, ["kl_drift"])["kl_drift"]
    >>> round(r.rho, 3), r.n, round(r.rho_cases, 3), r.cases
    (0.974, 5, 0.992, 4)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

NAN2 = (math.nan, math.nan)


@dataclass(frozen=True)
class Correlation:
    rho: float  # Pearson's ρ over rows (the paper's)
    p: float  # its two-sided p, rows taken as independent
    n: int  # rows
    cases: int = 0  # cases the rows come from
    rho_cases: float = math.nan  # Pearson's ρ over the case means
    p_cases: float = math.nan  # its two-sided p, cases independent
    ci_cases: tuple[float, float] = NAN2  # its 95% interval (Fisher's z)


def _pearson(x: np.ndarray, y: np.ndarray):
    """scipy's result, or None when ρ is undefined (fewer than 3 points or a constant column)."""
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return stats.pearsonr(x, y)


def pearson(
    rows: Sequence[dict], factors: Sequence[str], target: str = "p_edit", *, cluster: str = "case_id"
) -> dict[str, Correlation]:
    """Pearson ρ and two-sided p of each factor against ``target`` over ``rows`` (NaN when fewer
    than 3 rows or a constant column), and the same over the case means (rows grouped by their
    ``cluster`` key; NaN with fewer than 4 cases, where Fisher's interval is undefined)."""
    keys = [(cluster in r, r[cluster] if cluster in r else k) for k, r in enumerate(rows)]
    codes = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    group = np.array([codes[key] for key in keys], int)
    n_cases = len(codes)

    def means(v: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=v, minlength=n_cases) / np.bincount(group, minlength=n_cases)

    y = np.array([r[target] for r in rows], float)
    out = {}
    for f in factors:
        x = np.array([r[f] for r in rows], float)
        res = _pearson(x, y)
        if res is None:
            out[f] = Correlation(math.nan, math.nan, len(rows), n_cases)
            continue
        by_case = _pearson(means(x), means(y)) if n_cases >= 4 else None
        ci = by_case.confidence_interval() if by_case is not None else None
        out[f] = Correlation(
            float(res.statistic),
            float(res.pvalue),
            len(rows),
            n_cases,
            math.nan if by_case is None else float(by_case.statistic),
            math.nan if by_case is None else float(by_case.pvalue),
            NAN2 if ci is None else (float(ci.low), float(ci.high)),
        )
    return out
