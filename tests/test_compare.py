"""`python -m drift compare`: one table of finished runs, paired differences against the first."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from drift.__main__ import main
from drift.cli.spec import run_label
from drift.evaluation.compare import compare_table, paired_difference


def _run(path, config, values):
    """A results JSON whose case i has ES = RS = values[i] (RS missing where the value is None)."""
    cases = [
        {"case_id": i, "subject": f"s{i}", "metrics": {"ES": v} | ({} if v is None else {"RS": v})}
        for i, v in enumerate(values)
        if v is not None
    ]
    path.write_text(json.dumps({"config": config, "summary": {}, "cases": cases}))
    return path


def test_paired_difference_matches_cases_by_id_and_uses_scipys_paired_test():
    ref = [{"case_id": i, "metrics": {"RS": float(v)}} for i, v in enumerate([0, 0, 100, 50, 20])]
    other = [
        {"case_id": i, "metrics": {"RS": float(v)}}
        for i, v in reversed(list(enumerate([100, 0, 100, 100, 10])))
    ]
    d = paired_difference(ref, other, "RS")
    assert (d.n, d.better, d.worse) == (5, 2, 1)
    assert d.mean == pytest.approx((100 + 0 + 0 + 50 - 10) / 5)
    assert d.p == pytest.approx(stats.ttest_rel([100, 0, 100, 100, 10], [0, 0, 100, 50, 20]).pvalue)


def test_paired_difference_of_identical_runs_has_no_p_value_and_missing_cases_are_left_out():
    ref = [{"case_id": i, "metrics": {"ES": 100.0}} for i in range(3)]
    d = paired_difference(ref, ref[:2] + [{"case_id": 9, "metrics": {"ES": 0.0}}], "ES")
    assert (d.n, d.mean, d.better, d.worse) == (2, 0.0, 0, 0) and math.isnan(d.p)
    assert paired_difference(ref, ref, "RS").n == 0


def test_labels_name_the_options_that_change_a_run():
    assert run_label({"editor": "rome"}) == "rome"
    assert (
        run_label({"editor": "rome", "sadr": 1e-2, "sadr_heads": "all", "steps": 80})
        == "rome+SADR(γ=0.01, all heads) 80 steps"
    )
    assert (
        run_label({"editor": "adaple", "dr": 0.8, "hp": {"n_prefixes": "11"}})
        == "adaple DR(p=0.8) n_prefixes=11"
    )


def test_compare_prints_every_run_and_the_paired_rows(tmp_path, capsys):
    a = _run(tmp_path / "a.json", {"editor": "rome"}, [100, 0, 100, 0])
    b = _run(tmp_path / "b.json", {"editor": "rome", "sadr": 1e-2}, [100, 100, 100, None])
    assert main(["compare", str(a), f"mine={b}", "--metrics", "ES,RS"]) == 0
    out = capsys.readouterr().out
    assert "| run | ES | RS |" in out
    assert "| rome | 50.0 ± " in out and "(n=4) |" in out
    assert "| mine | 100.0 ± 0.0 (n=3) | 100.0 ± 0.0 (n=3) |" in out  # each run's own count
    # paired over the 3 cases b has: +33.3 (one case better of three), on ES and RS alike
    assert "| mine | +33.3 (p=0.42; 1/0) | +33.3 (p=0.42; 1/0) |" in out
    same = json.loads(a.read_text())
    assert "| again | +0.0 (p n/a; 0/0) |" in compare_table([("a", same), ("again", same)], ["ES"])


def test_compare_names_a_bad_file(tmp_path):
    with pytest.raises(ValueError, match="missing.json does not exist"):
        main(["compare", str(tmp_path / "missing.json")])
    (tmp_path / "bad.json").write_text(json.dumps({"summary": {}}))
    with pytest.raises(ValueError, match=r"bad.json is not a results JSON .*no 'config' or 'cases'"):
        main(["compare", str(tmp_path / "bad.json")])
    with pytest.raises(ValueError, match="no runs"):
        compare_table([])
    good = _run(tmp_path / "a=1.json", {"editor": "rome"}, [100])  # an "=" in a file name is no label
    with pytest.raises(ValueError, match=r"no run has the metric\(s\) \['XS'\]; they have \['ES', 'RS'\]"):
        main(["compare", str(good), "--metrics", "ES,XS"])


def test_compare_refuses_runs_scored_differently(tmp_path):
    a = _run(tmp_path / "a.json", {"editor": "rome", "scoring": "mean", "pool": "prompts"}, [100, 0])
    b = _run(tmp_path / "b.json", {"editor": "rome"}, [100, 100])  # written before scoring was recorded
    with pytest.raises(
        ValueError, match=r"scored differently.*\('mean', 'prompts'\).*\('product', 'cases'\)"
    ):
        main(["compare", str(a), str(b)])
    c = _run(tmp_path / "c.json", {"editor": "rome", "scoring": "mean", "pool": "prompts"}, [0, 0])
    assert main(["compare", str(a), str(c), "--metrics", "ES"]) == 0
