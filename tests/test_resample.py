"""Statistics over cases, not rows: the cluster bootstrap draws whole cases, and the correlation over
case means is not fooled by duplicated rows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drift.evaluation.resample import cluster_bootstrap, interval
from drift.interp.correlate import pearson


def test_whole_clusters_are_drawn_and_each_draw_has_as_many_clusters():
    clusters = ["a", "b", "b", "b"]  # one row, then three rows of one case
    draws = cluster_bootstrap(lambda i: float(len(i)), clusters, n=300)
    # two clusters drawn with replacement: a+a (2 rows), a+b (4) or b+b (6), never anything else
    assert set(draws.tolist()) == {2.0, 4.0, 6.0}


def test_the_interval_is_read_from_the_defined_draws():
    draws = np.array([-1.0, 0.5, 1.0, 2.0, 3.0, math.nan, 4.0, 5.0, 6.0, 7.0, 8.0])
    d = np.array([-1.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])  # NaN dropped
    assert interval(draws) == pytest.approx((np.percentile(d, 2.5), np.percentile(d, 97.5)))
    assert all(math.isnan(x) for x in interval(np.array([math.nan, math.nan])))


def test_fewer_than_two_clusters_give_no_interval():
    assert np.isnan(cluster_bootstrap(lambda i: 1.0, [7, 7, 7], n=10)).all()


def test_duplicated_rows_shrink_the_rows_p_but_not_the_cases():
    """Each case's row written four times: Pearson's ρ is unchanged and its row-level p shrinks
    (the rows look four times as many), while the case means, and so ρ over cases, its p and its
    interval, are those of the single rows."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=12)
    y = 0.5 * x + rng.normal(size=12)
    once = [{"case_id": k, "f": a, "p_edit": b} for k, (a, b) in enumerate(zip(x, y, strict=True))]
    four = [dict(r) for r in once for _ in range(4)]
    r1, r4 = pearson(once, ["f"])["f"], pearson(four, ["f"])["f"]
    rho = np.corrcoef(x, y)[0, 1]
    assert r4.rho == pytest.approx(r1.rho) == pytest.approx(rho) == pytest.approx(r4.rho_cases)
    assert (r1.n, r1.cases, r4.n, r4.cases) == (12, 12, 48, 12)
    assert r4.p < r1.p / 10
    assert r4.p_cases == pytest.approx(r1.p) and r4.ci_cases == pytest.approx(r1.ci_cases)
    # Fisher's interval written out: tanh(atanh(ρ) ± 1.96 / sqrt(n - 3))
    z, half = np.arctanh(rho), 1.959964 / np.sqrt(12 - 3)
    assert r1.ci_cases == pytest.approx((np.tanh(z - half), np.tanh(z + half)), abs=1e-4)


def test_case_means_weigh_each_case_once():
    """Two cases with many rows and two with one: ρ over cases uses the four case means."""
    rows = [{"case_id": "a", "f": v, "p_edit": v / 2} for v in (0.0, 1.0, 2.0)]  # mean (1, 0.5)
    rows += [{"case_id": "b", "f": 4.0, "p_edit": 0.1}, {"case_id": "c", "f": 5.0, "p_edit": 3.0}]
    rows += [{"case_id": "d", "f": v, "p_edit": 1.0} for v in (6.0, 8.0)]  # mean (7, 1)
    r = pearson(rows, ["f"])["f"]
    expected = np.corrcoef([1, 4, 5, 7], [0.5, 0.1, 3.0, 1.0])[0, 1]
    assert r.cases == 4 and r.rho_cases == pytest.approx(expected)


def test_rows_without_a_case_are_their_own_case():
    rows = [{"f": float(k), "p_edit": float(k % 3)} for k in range(6)]
    r = pearson(rows, ["f"])["f"]
    assert (r.n, r.cases) == (6, 6) and r.rho_cases == pytest.approx(r.rho)
