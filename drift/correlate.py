"""Pearson correlation of drift factors with failure (main paper Fig. 4, Tables 2 and 4).

Example:
    >>> rows = [{"kl_drift": 0.1, "p_edit": 0.2}, {"kl_drift": 0.5, "p_edit": 0.6},
    ...         {"kl_drift": 0.3, "p_edit": 0.3}]
    >>> r = pearson(rows, ["kl_drift"])["kl_drift"]
    >>> round(r.rho, 3), r.n
    (0.961, 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Correlation:
    rho: float
    p: float
    n: int


def pearson(rows: Sequence[dict], factors: Sequence[str], target: str = "p_edit") -> dict[str, Correlation]:
    """Pearson ρ and two-sided p of each factor against ``target`` over ``rows``
    (NaN when fewer than 3 rows or a constant column)."""
    out = {}
    y = [r[target] for r in rows]
    for f in factors:
        x = [r[f] for r in rows]
        if len(rows) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
            out[f] = Correlation(math.nan, math.nan, len(rows))
            continue
        res = stats.pearsonr(x, y)
        out[f] = Correlation(float(res.statistic), float(res.pvalue), len(rows))
    return out
