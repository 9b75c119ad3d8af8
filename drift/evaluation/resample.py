"""Bootstrap intervals that resample whole clusters — the prompts of one case, the entries of one edit.

Rows of one case are not independent (a case's four distracting prompts share its edit), so
resampling rows makes intervals too narrow and p-values too small. :func:`cluster_bootstrap`
resamples clusters with replacement through ``scipy.stats.bootstrap`` and hands the statistic the
row indices of the clusters drawn; :func:`interval` reads the draws.

Example:
    >>> import numpy as np
    >>> x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    >>> draws = cluster_bootstrap(lambda i: x[i].mean(), [0, 0, 1, 1, 2, 2], n=200)
    >>> draws.shape, bool(1.5 <= interval(draws)[0] <= interval(draws)[1] <= 5.5)
    ((200,), True)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats


def cluster_bootstrap(
    statistic: Callable[[np.ndarray], float],
    clusters: Sequence | None,
    *,
    size: int | None = None,
    n: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """``n`` draws [n] of ``statistic(rows)``, each on the rows of as many clusters as there are,
    drawn with replacement. ``clusters`` labels each row (``None``: each of ``size`` rows is its own
    cluster). A draw where the statistic is undefined stays NaN; with fewer than two clusters
    every draw is NaN."""
    c = np.arange(size) if clusters is None else np.asarray(clusters)
    ids, inverse = np.unique(c, return_inverse=True)
    if len(ids) < 2:
        return np.full(n, math.nan)
    members = [np.flatnonzero(inverse == k) for k in range(len(ids))]

    def on_rows(picked: np.ndarray) -> float:
        return statistic(np.concatenate([members[k] for k in picked]))

    with warnings.catch_warnings():  # scipy's own interval is unused: NaN draws are ours to drop
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (np.arange(len(ids)),),
            on_rows,
            n_resamples=n,
            vectorized=False,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    return np.asarray(res.bootstrap_distribution, float)


def interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the defined draws (NaN, NaN when none is)."""
    d = draws[~np.isnan(draws)]
    if len(d) == 0:
        return (math.nan, math.nan)
    tail = 100 * (1 - level) / 2
    return (float(np.percentile(d, tail)), float(np.percentile(d, 100 - tail)))
