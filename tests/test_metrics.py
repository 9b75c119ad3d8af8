"""Metric functions on hand-made inputs, and property-based checks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from drift.data import parse_case
from drift.evaluation.metrics import CasePlan, harmonic_mean, mean_ci95, n_gram_entropy, plan_case, summarise
from tests.test_data import MERGED


def test_plan_compares_the_right_targets():
    plan = plan_case(parse_case(MERGED))
    es = plan.comparisons["ES"][0]
    assert plan.pairs[es[0]][1] == "Rome" and plan.pairs[es[1]][1] == "Paris"
    ns = plan.comparisons["NS"][0]
    assert plan.pairs[ns[0]] == ("The Louvre is located in", "Paris")
    assert plan.pairs[ns[1]] == ("The Louvre is located in", "Rome")
    assert "RS" not in plan.comparisons and "PS" not in plan.comparisons


def test_scores_and_magnitudes():
    plan = CasePlan()
    for right, wrong in [(-0.1, -2.0), (-3.0, -1.0)]:
        plan.compare("NS", plan.pair("a", "x"), plan.pair("a", "y"))
    lp = torch.tensor([-0.1, -2.0, -3.0, -1.0])
    m = plan.metrics(lp, torch.ones(4), torch.ones(4))
    assert m["NS"] == 50.0
    assert m["NM"] == pytest.approx(100 * (math.exp(-0.1) + math.exp(-3.0)) / 2)


def test_commonsense_is_length_normalised():
    plan = CasePlan()
    plan.compare("OS", plan.pair("q", "long right answer"), plan.pair("q", "wrong"))
    # right: -3.0 over 6 tokens = -0.5/token; wrong: -1.0 over 1 token.
    m = plan.metrics(torch.tensor([-3.0, -1.0]), torch.ones(2), torch.tensor([6, 1]))
    assert m["OS"] == 100.0


def test_harmonic_mean_and_ci():
    assert harmonic_mean([50, 100]) == pytest.approx(200 / 3)
    assert harmonic_mean([0, 100]) == 0.0
    mean, lo, hi = mean_ci95([0, 100, 0, 100])
    assert mean == 50 and lo < 50 < hi
    assert all(math.isnan(v) for v in mean_ci95([]))


def test_fluency_penalises_repetition():
    assert n_gram_entropy(["the cat the cat the cat the cat"]) < n_gram_entropy(
        ["a quick brown fox jumps over lazy dogs"]
    )


def test_summary_has_avg_s_and_counts():
    rows = [
        {"ES": 100.0, "PS": 100.0, "NS": 50.0, "RS": 50.0, "DNS": 50.0},
        {"ES": 0.0, "PS": 100.0, "NS": 50.0, "RS": 50.0, "DNS": 50.0, "OS": 1.0},
    ]
    s = summarise(rows)
    assert s["ES"] == 50.0 and s["OS_n"] == 1 and s["ES_n"] == 2
    assert s["AvgS"] == pytest.approx(harmonic_mean([50, 100, 50, 50, 50]))


@given(st.lists(st.floats(min_value=0.01, max_value=100), min_size=1, max_size=10))
def test_harmonic_mean_between_min_and_max(vals):
    h = harmonic_mean(vals)
    assert min(vals) - 1e-9 <= h <= max(vals) + 1e-9


@given(st.lists(st.floats(min_value=-50, max_value=0), min_size=2, max_size=12))
def test_scores_are_percentages(lps):
    plan = CasePlan()
    for i in range(0, len(lps) - 1, 2):
        plan.compare("DNS", plan.pair("p", f"a{i}"), plan.pair("p", f"b{i}"))
    m = plan.metrics(torch.tensor(lps), torch.ones(len(lps)), torch.ones(len(lps)))
    assert 0 <= m["DNS"] <= 100 and 0 <= m["DNM"] <= 100


@given(st.lists(st.floats(min_value=0, max_value=100), min_size=2, max_size=30))
def test_ci_contains_mean(vals):
    mean, lo, hi = mean_ci95(vals)
    assert lo - 1e-6 <= mean <= hi + 1e-6


def test_a_missing_metric_is_out_of_the_mean_and_of_n_and_survives_a_strict_json_round_trip(tmp_path):
    """A NaN row (or the ``null`` strict JSON writes for it) is skipped by the mean and, now, by
    ``n`` too (it was counted); the results file is strict JSON and reads back to the same summary."""
    import json

    from drift.cli.runs import read_any, write_results
    from drift.evaluation.metrics import summary_stats as stats

    rows = [
        {"case_id": i, "metrics": {"ES": es, "ES_k": 2, "PPL": ppl}}
        for i, (es, ppl) in enumerate([(100.0, 20.0), (50.0, math.nan), (0.0, 30.0)])
    ]
    s = summarise([r["metrics"] for r in rows])
    assert (s["PPL"], s["PPL_n"], s["ES_n"], s["ES_k"]) == (25.0, 2, 3, 6)
    nan_only = summarise([{"PPL": math.nan}, {"PPL": None}])
    assert math.isnan(nan_only["PPL"]) and nan_only["PPL_n"] == 0
    out = tmp_path / "r.json"
    write_results(out, {"editor": "none"}, rows, "prompts")
    strict = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"bare {c} in the results"))
    assert strict["cases"][1]["metrics"]["PPL"] is None
    _, back = read_any(out)
    again = summarise([r["metrics"] for r in back])
    assert again == s
    typed = stats(json.loads(json.dumps(nan_only, allow_nan=True).replace("NaN", "null")))
    assert math.isnan(typed["PPL"].mean) and typed["PPL"].n == 0
