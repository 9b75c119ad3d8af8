"""The statistics drift takes from scikit-learn, pinned to the numbers drift's own code gave before
it did: TF-IDF (``metrics.TfidfStats``), the audit's weighted AUROC, precision at recall,
calibration bins and the ridge logistic regression of :func:`drift.interp.audit.combine`.

Every expected number below was printed by the hand-written code these functions replaced (commit
"tests: pin TF-IDF and the audit's statistics"), on the literal inputs written here. Equality is
exact (``pytest.approx``'s default 1e-6 relative only for sums whose order may differ) except for
the logistic fit, whose weights come from an iterative optimiser: scipy's L-BFGS-B before,
scikit-learn's lbfgs now, each stopping at its own tolerance (they differ by 4e-7 here).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from drift.evaluation.metrics import TfidfStats, consistency, tfidf_similarity
from drift.interp import audit

# ---- TF-IDF -------------------------------------------------------------------------------------
DOCS = [
    "The Eiffel Tower is in Paris, the capital of France.",
    "Rome is the capital of Italy; the Colosseum is in Rome.",
    "Paris and Rome are cities. Café au lait in Paris, 2024!",
    "x y z a_b __init__ 3.14 Zürich naïve über",
    "",
]
VOCAB = (
    "14 2024 __init__ a_b and are au café capital cities colosseum eiffel france in is italy lait "
    "naïve of paris rome the tower zürich über"
).split()
A, B, C = math.log(6 / 2) + 1, math.log(6 / 3) + 1, math.log(6 / 4) + 1  # df 1, 2, 3 of 5 documents
IDF = {w: A for w in VOCAB} | {w: B for w in ("capital", "is", "of", "paris", "rome", "the")} | {"in": C}


def test_tfidf_statistics_are_todays():
    stats = TfidfStats.fit(DOCS)
    assert stats.vocab == {w: i for i, w in enumerate(VOCAB)}  # words of 2+ word characters, sorted
    assert stats.idf.tolist() == pytest.approx([IDF[w] for w in VOCAB], rel=1e-15)
    assert stats.idf[stats.vocab["rome"]] == pytest.approx(1.6931471805599454, rel=1e-15)
    pairs = [
        ("Rome Rome Paris café", "the capital of Italy"),
        ("Zürich über alles", "naïve Zürich"),
        ("a_b 3.14", "__init__ a_b 14"),
    ]
    sims = [tfidf_similarity(a, b, stats) for a, b in pairs]
    assert sims == pytest.approx([0.0, 0.5, 0.8164965809277261], rel=1e-12)
    got = consistency(["Rome is a city", "in Italy"], ["Rome Rome", "the capital"], stats)
    assert got == pytest.approx(0.39721278208562927, rel=1e-12)
    assert math.isnan(tfidf_similarity("unknown words", "Rome", stats))


def test_tfidf_with_given_statistics_counts_only_their_words():
    stats = TfidfStats(np.array([2.0, 5.0, 1.5]), {"rome": 0, "nice": 1, "city": 2})
    assert stats.vector("Rome is nice, ROME nice city!").tolist() == [4.0, 10.0, 1.5]
    assert tfidf_similarity("rome nice", "nice", stats) == pytest.approx(5 / math.sqrt(29), rel=1e-15)


# ---- the audit's statistics ---------------------------------------------------------------------
S = [1.75, 1.25, 1.25, 1.75, 1.0, 1.5, 1.5, 0.25, 0.0, 0.5, 0.5, 1.5, 1.75, 0.0, 0.75, 1.5, 0.25, 1.5,
     0.0, 0.75, 1.5, 0.5, 0.5, 0.5, 1.25, 0.5, 1.75, 0.75, 0.75, 1.0, 1.0, 1.0, 1.0, 1.75, 1.5, 1.5,
     1.25, 1.0, 0.5, 1.75, 0.75, 0.25, 1.5, 0.25, 1.5]  # fmt: skip
Y = [1, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1,
     1, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1]  # fmt: skip
W = [0, 2, 1, 0, 0, 2, 2, 2, 2, 3, 2, 1, 2, 2, 0, 0, 2, 1, 2, 1, 0, 0, 1, 3, 1, 1, 2, 3, 1, 2, 1, 2, 1,
     2, 2, 2, 3, 0, 2, 1, 1, 0, 0, 1, 3]  # fmt: skip


def test_auroc_plain_and_weighted_are_todays():
    assert audit.auroc(S, Y) == pytest.approx(0.4652777777777778, rel=1e-12)
    assert audit.auroc(S, Y, W) == pytest.approx(0.5148148148148148, rel=1e-12)
    assert math.isnan(audit.auroc(S[:5], [1] * 5))
    assert math.isnan(audit.auroc(S[:4], [1, 0, 1, 0], [1, 0, 1, 0]))  # no weight on a sound case


@pytest.mark.parametrize(
    "recall, want", [(0.5, 0.46153846153846156), (0.8, 0.5526315789473685), (1.0, 0.5714285714285714),
                     (0.33, 0.5)]
)  # fmt: skip
def test_precision_at_recall_is_todays(recall, want):
    assert audit.precision_at_recall(S, Y, recall) == pytest.approx(want, rel=1e-12)


P = [0.805, 0.808, 0.515, 0.286, 0.054, 0.383, 0.408, 0.045, 0.049, 0.999, 0.652, 0.235, 0.435, 0.974,
     0.898, 0.844, 0.392, 0.493, 0.677, 0.061, 0.556, 0.271, 0.88]  # fmt: skip


# (mean predicted, observed rate, cases) per bin: equal-count bins, the first ones one case larger
CALIBRATION = {
    5: [(0.0888, 0.6, 5), (0.348, 0.2, 5), (0.5302, 0.4, 5), (0.7835, 0.25, 4), (0.93775, 0.5, 4)],
    4: [(0.11916666666666666, 0.5, 6), (0.3995, 1 / 3, 6), (0.6688333333333333, 1 / 3, 6), (0.919, 0.4, 5)],
    3: [(0.173, 0.375, 8), (0.516, 0.375, 8), (0.8868571428571428, 0.42857142857142855, 7)],
}


@pytest.mark.parametrize("bins", sorted(CALIBRATION))
def test_calibration_bins_are_todays(bins):
    got = [(b["predicted"], b["observed"], b["n"]) for b in audit.calibration(P, Y[:23], bins=bins)]
    assert [n for *_, n in got] == [n for *_, n in CALIBRATION[bins]]
    assert got == [pytest.approx(want, rel=1e-12) for want in CALIBRATION[bins]]


# ridge logistic regression (λ = 1 on the weights, not the bias) of z-scored signals
X = [[0.03, 1.36, 1.22, -0.51, -0.3], [-0.53, 0.57, -0.06, 0.75, -1.85], [1.57, -0.1, 0.68, -0.14, -0.38],
     [0.46, 0.82, -0.2, -0.15, 0.69], [-0.87, -1.51, 0.39, -0.67, -1.92], [-0.81, -0.47, -1.19, -1.49, 0.04],
     [0.9, -0.23, -0.74, 0.38, 0.72], [-0.3, 0.54, 1.04, -0.21, -0.81], [0.35, 0.25, 1.1, -1.28, -0.66],
     [-0.84, -1.73, 0.13, 0.53, -0.74], [1.39, 0.82, 0.63, 0.4, 0.96], [-1.33, 0.61, 0.6, -1.77, 0.35],
     [-0.25, 0.78, -0.44, -0.02, 0.34], [-0.88, 0.6, -0.1, 0.49, -0.52], [1.09, 0.61, -0.18, 0.63, 1.26],
     [1.79, -1.57, 0.88, 0.47, -0.09], [-1.01, 1.26, -1.26, 0.57, 1.3], [-1.6, -0.3, -1.31, 0.24, 1.51],
     [2.02, -1.78, -0.57, 0.7, 1.58], [0.42, -0.75, 0.3, -0.02, -0.2], [-0.73, 0.39, 0.31, -0.09, -0.22],
     [-1.28, -0.49, 1.21, -0.19, -1.44], [1.33, 0.53, 2.11, 0.06, -0.46], [-1.45, 1.32, 2.57, -0.82, -0.65],
     [0.6, -0.83, -0.27, -0.35, 0.19], [1.09, 0.02, 0.92, -0.42, 0.33], [-2.14, -1.45, 0.8, -0.59, 0.58],
     [0.54, 1.32, 0.81, 1.02, -0.11], [-0.7, -0.73, -0.49, -1.13, -0.55], [-0.09, 0.25, -0.34, -1.92, -0.07],
]  # fmt: skip
LABELS = [1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0, 0]


def test_the_combined_fit_is_todays():
    rows = [dict(zip(audit.SIGNALS, r)) for r in X]
    fit = audit.combine(rows, LABELS)
    assert fit.mean == pytest.approx(
        [-0.041, 0.003666666666666681, 0.28500000000000003, -0.18433333333333332, -0.03733333333333333],
        rel=1e-12,
    )
    assert fit.std == pytest.approx(
        [1.0920328139147957, 0.9409374167404665, 0.906571379796796, 0.7531519693188679, 0.8760933486538725],
        rel=1e-12,
    )
    want = [0.44707582287328346, 1.8335263453140276, 0.2091617713404184, 0.018419237856659117,
            0.20386173163222956, -0.23844130832229676]  # fmt: skip
    assert fit.weights == pytest.approx(want, abs=1e-5)  # two optimisers' stopping points
    scores = [fit.score(r) for r in rows[:4]]
    assert scores == pytest.approx([0.7047706673781423, 0.6203823013795703, 0.9623915474343796,
                                    0.7809489370074368], abs=1e-5)  # fmt: skip
    # a perfectly separating signal: the ridge keeps the weights finite, the bias at 0 by symmetry
    sep = [dict.fromkeys(audit.SIGNALS, v) for v in (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)]
    weights = audit.combine(sep, [0, 0, 0, 1, 1, 1]).weights
    assert weights == pytest.approx([0.0] + [0.49088596020477954] * 5, abs=1e-5)
