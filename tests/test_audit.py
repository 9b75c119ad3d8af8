"""`drift audit`: an edit's risk signals, the failure label, and the validation statistics, each
checked against a formula written out here."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from drift.__main__ import main
from drift.data import EditCase, Probe, load_cases
from drift.editors.rome import ROMEHParams, compute_rome
from drift.interp import audit


def _pairwise_auroc(scores, labels) -> float:
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auroc_is_the_share_of_failing_sound_pairs_ranked_right():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 40).astype(float)  # many ties
    labels = rng.integers(0, 2, 40)
    assert audit.auroc(scores, labels) == pytest.approx(_pairwise_auroc(scores, labels))
    lo, hi = audit.auroc_ci(scores, labels, n=300)
    assert lo <= audit.auroc(scores, labels) <= hi
    assert math.isnan(audit.auroc([1.0, 2.0], [1, 1]))


def test_weighted_auroc_counts_each_entry_as_often_as_its_weight():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 30).astype(float)
    labels = rng.integers(0, 2, 30)
    weights = rng.integers(0, 4, 30)  # zero weights drop out
    repeated_s = [s for s, w in zip(scores, weights) for _ in range(w)]
    repeated_y = [y for y, w in zip(labels, weights) for _ in range(w)]
    assert audit.auroc(scores, labels, weights) == pytest.approx(_pairwise_auroc(repeated_s, repeated_y))
    assert audit.auroc(scores, labels, np.ones(30)) == pytest.approx(audit.auroc(scores, labels))


def test_the_per_prompt_view_scores_every_prompt_right_before_by_its_edit():
    rows = [
        {"failures": {"NS": 2, "DNS": 0}, "right_before": {"NS": 3, "DNS": 1}},  # 2 broken, 2 kept
        {"failures": {"RS": 0}, "right_before": {"RS": 2}},  # 2 kept
        {"failures": {"NS": 1}, "right_before": {"NS": 1}},  # 1 broken
    ]
    scores = [0.9, 0.1, 0.5]
    # prompts: broken at 0.9, 0.9, 0.5; kept at 0.9, 0.9, 0.1, 0.1
    expected = _pairwise_auroc([0.9, 0.9, 0.5, 0.9, 0.9, 0.1, 0.1], [1, 1, 1, 0, 0, 0, 0])
    view = audit.per_prompt(scores, rows)
    assert view["auroc"] == pytest.approx(expected) and (view["prompts"], view["broken"]) == (7, 3)
    lo, hi = view["auroc_ci"]
    assert lo <= view["auroc"] <= hi
    # NS alone: broken at 0.9, 0.9, 0.5; kept at 0.9 (the first edit's DNS prompt is left out)
    ns = audit.per_prompt(scores, rows, task="NS", ci=False)
    assert ns["auroc"] == pytest.approx(_pairwise_auroc([0.9, 0.9, 0.5, 0.9], [1, 1, 1, 0]))
    assert (ns["prompts"], ns["broken"]) == (4, 3)


def test_the_per_prompt_view_removes_the_prompt_count_confound():
    # every edit breaks half of the prompts it had right: per edit the count "predicts" failure
    # (the one-prompt edits cannot break half), per prompt it predicts nothing
    rows = []
    for i, n in enumerate([1, 1, 2, 4, 6, 8, 1, 2]):
        broken = n // 2
        rows.append(
            {
                "metrics": {name: float(i % 3) for name in audit.SIGNALS},
                "label": int(broken > 0),
                "prompts": {"NS": n},
                "failures": {"NS": broken},
                "right_before": {"NS": broken * 2 or n},
            }
        )
    res = audit.report(rows)
    assert res["baseline_prompt_count"] == 1.0
    assert res["per_prompt"]["baseline_right_before"] == pytest.approx(
        audit.per_prompt([sum(r["right_before"].values()) for r in rows], rows)["auroc"]
    )
    assert set(res["per_prompt"]["signals"]) == set(audit.SIGNALS)
    assert res["per_prompt"]["tasks"]["NS"]["broken"] == sum(r["failures"]["NS"] for r in rows)
    assert math.isnan(res["per_prompt"]["tasks"]["DNS"]["signals"]["head_kl"])  # no DNS prompts
    assert audit.per_prompt([2.0, 4.0, 6.0], rows[3:6])["auroc"] == 0.5


def test_precision_at_recall_flags_down_to_the_case_that_reaches_the_recall():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.1]
    labels = [1, 0, 1, 0, 1, 0]  # 3 failing: recall 2/3 is reached at the third case
    assert audit.precision_at_recall(scores, labels, recall=0.6) == pytest.approx(2 / 3)
    assert audit.precision_at_recall(scores, labels, recall=1.0) == pytest.approx(3 / 5)


def test_the_combined_score_learns_which_signal_predicts_and_is_reported_on_another_split():
    rng = np.random.default_rng(1)

    def rows(n):
        out = []
        for _ in range(n):
            s = {name: float(rng.normal()) for name in audit.SIGNALS}
            out.append((s, int(s["subject_gain"] + 0.3 * rng.normal() > 0)))
        return out

    fit, test = rows(80), rows(60)
    model = audit.combine([s for s, _ in fit], [y for _, y in fit])
    weights = dict(zip(model.names, model.weights[1:]))
    assert max(weights, key=weights.get) == "subject_gain"
    res = audit.validate(fit, test)
    assert res["n"] == 60 and res["n_fit"] == 80 and res["auroc"] > 0.85
    assert res["signals"]["subject_gain"] > 0.85 and abs(res["signals"]["update_size"] - 0.5) < 0.2
    assert sum(b["n"] for b in res["calibration"]) == 60


def _mean_token_logprob(model, prompt: str, target: str) -> float:
    """log P(target | prompt) / tokens, from the logits of one plain forward."""
    ids = model.encode(prompt)
    tgt = model.encode_target(target)
    logits = model.forward(torch.tensor([ids + tgt[:-1]]))[0]
    logp = logits.log_softmax(-1)[len(ids) - 1 :]
    return float(sum(logp[i, t] for i, t in enumerate(tgt)) / len(tgt))


def test_leak_signals_are_the_edits_rise_in_the_new_objects_mean_token_log_probability(tiny):
    case = load_cases("builtin")[0]
    edit = compute_rome(tiny, case, ROMEHParams(layer=0, steps=4, lr=2.0))
    risk = audit.audit(tiny, edit, case)
    context, relation = audit.probes(case)
    assert relation[0] == f"{case.edit_sentence} It is located in the city of"

    def rise(prompts):
        before = [_mean_token_logprob(tiny, p, case.o_edit) for p in prompts]
        with edit.applied(tiny):
            after = [_mean_token_logprob(tiny, p, case.o_edit) for p in prompts]
        return float(np.mean(after) - np.mean(before))

    assert risk.signals["leak_context"] == pytest.approx(rise([t for t, _ in context]), abs=1e-5)
    assert risk.signals["leak_relation"] == pytest.approx(rise(relation), abs=1e-5)
    assert risk.signals["update_size"] > 0 and risk.top_heads[0][2] >= risk.top_heads[-1][2]


def test_the_audit_never_reads_the_prompts_it_predicts(tiny):
    case = load_cases("builtin")[0]
    edit = compute_rome(tiny, case, ROMEHParams(layer=0, steps=2))
    other = dataclasses.replace(
        case,
        neighborhood=(Probe("Something else entirely is in", "Berlin"),),
        relation=(),
    )  # the distracting prompts follow the neighbourhood
    assert audit.audit(tiny, edit, case).signals == audit.audit(tiny, edit, other).signals


def test_the_label_counts_prompts_right_before_and_wrong_after(tiny):
    case = EditCase.simple("The Eiffel Tower is located in the city of", "Eiffel Tower", "Rome", "Paris")
    louvre = (Probe("The Louvre is in the city of", "Paris"), Probe("Notre-Dame is in the city of", "Paris"))
    case = dataclasses.replace(case, neighborhood=louvre)
    edit = compute_rome(tiny, case, ROMEHParams(layer=0, steps=8, lr=2.0))

    def right(prompt: str, answer: str) -> bool:
        return _mean_token_logprob(tiny, prompt, answer) > _mean_token_logprob(tiny, prompt, case.o_edit)

    tasks = {"NS": case.neighborhood, "DNS": case.distracting}
    before = {m: [right(p.prompt, p.answer) for p in probes] for m, probes in tasks.items()}
    with edit.applied(tiny):
        after = {m: [right(p.prompt, p.answer) for p in probes] for m, probes in tasks.items()}
    expected = {m: sum(b and not a for b, a in zip(before[m], after[m])) for m in tasks}
    assert audit.failures(tiny, edit, case) == expected
    assert audit.outcomes(tiny, edit, case) == {
        "right_before": {m: sum(before[m]) for m in tasks},
        "broken": expected,
    }
    unchanged = dataclasses.replace(
        edit, deltas=[dataclasses.replace(d, delta=torch.zeros_like(d.delta)) for d in edit.deltas]
    )
    assert audit.failures(tiny, unchanged, case) == {"NS": 0, "DNS": 0}
    assert audit.failures(tiny, edit, dataclasses.replace(case, neighborhood=())) is None


def test_audit_command_writes_the_summary_other_tools_read_and_resumes(
    tmp_path, tiny_dir, monkeypatch, capsys
):
    out = tmp_path / "audit.json"
    argv = ["audit", "--model", tiny_dir, "--limit", "8", "--steps", "6", "--hp", "lr=2.0", "--validate"]
    assert main(argv + ["--out", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    assert {"auroc", "auroc_ci", "n", "signals"} <= set(res["summary"])
    assert set(res["summary"]["signals"]) == set(audit.SIGNALS) and res["summary"]["n"] == 8
    row = res["cases"][0]
    assert set(row["metrics"]) == set(audit.SIGNALS) and row["label"] in (0, 1)
    assert all(row["failures"][m] <= row["right_before"][m] <= row["prompts"][m] for m in row["failures"])
    assert res["config"]["command"] == "audit" and res["config"]["editor"] == "rome"
    import drift.interp.audit as module

    monkeypatch.setattr(module, "audit", lambda *a, **k: pytest.fail("a finished case was audited again"))
    partial = tmp_path / "again.json.partial.jsonl"
    partial.write_text("")  # a fresh log of the same run, filled from the finished one
    from drift.cli.runs import RecordLog

    with RecordLog(partial, res["config"]) as log:
        for r in res["cases"]:
            log.append(r)
    assert main(argv + ["--out", str(tmp_path / "again.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["cases"] == res["cases"]


@pytest.mark.xdist_group("rome_eiffel")
def test_the_eiffel_edit_leaks_and_a_weaker_copy_of_it_leaks_less(real, rome_eiffel):
    from tests.test_sadr import EIFFEL_WITH_NEIGHBOUR as case

    full = audit.audit(real, rome_eiffel, case).signals
    weaker = dataclasses.replace(
        rome_eiffel, deltas=[dataclasses.replace(d, delta=0.25 * d.delta) for d in rome_eiffel.deltas]
    )
    weak = audit.audit(real, weaker, case).signals
    assert full["leak_context"] > weak["leak_context"] > 0
    assert full["leak_relation"] > weak["leak_relation"]
    assert full["update_size"] == pytest.approx(4 * weak["update_size"], rel=1e-4)
    assert set(audit.failures(real, rome_eiffel, case)) == {"NS", "DNS"}


def test_precision_counts_every_case_tied_at_the_threshold_and_refuses_a_recall_beyond_one():
    assert audit.precision_at_recall([0.5] * 4, [1, 0, 0, 0], 0.8) == 0.25
    assert audit.precision_at_recall([0.5] * 4, [0, 0, 0, 1], 0.8) == 0.25
    with pytest.raises(ValueError, match="recall must be in"):
        audit.precision_at_recall([0.1, 0.2], [1, 0], 80)


def _rows(labels):
    return [{"metrics": {n: float(y) for n in audit.SIGNALS}, "label": y} for y in labels]


@pytest.mark.parametrize("labels", [[0, 1] * 4, [0, 0, 1, 0, 1, 0], [1, 0, 0, 0, 0, 1, 0, 0]])
def test_cross_fitting_keeps_a_perfect_signal_perfect(labels):
    res = audit.report(_rows(labels))
    assert res["auroc"] == 1.0 and all(a == 1.0 for a in res["signals"].values())
    assert "stratified" in res["fit"]


def test_too_few_or_one_class_edits_give_a_note_not_a_crash(tmp_path, tiny_dir, capsys):
    res = audit.report(_rows([1, 1, 1, 1, 0]))  # one sound edit: each fold cannot have both
    assert res["auroc"] is None and "too few" in res["note"]
    few = audit.report(_rows([0, 1]))
    assert "needs at least 4" in few["note"]
    assert few["auroc"] is None and set(few["signals"].values()) == {None}  # never 1.0/0.0 from 2 edits
    out = tmp_path / "a.json"
    args = ["audit", "--model", tiny_dir, "--limit", "2", "--steps", "2", "--validate", "--quiet"]
    assert main(args + ["--out", str(out)]) == 0
    assert "the AUROC needs at least 4 edits" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob("*.partial.jsonl"))
    with pytest.raises(ValueError, match="--fit .*needs an audit made with --validate"):
        main(args + ["--out", str(tmp_path / "b.json"), "--fit", str(out)])
    with pytest.raises(ValueError, match="--recall must be a fraction"):
        main(args + ["--out", str(tmp_path / "b.json"), "--recall", "80"])


def test_a_subject_missing_from_its_prompt_is_named():
    case = dataclasses.replace(load_cases("builtin")[0], subject="eiffel tower")
    with pytest.raises(ValueError, match="subject 'eiffel tower' is not in its prompt"):
        audit.probes(case)


def test_the_summary_gives_the_prompt_count_baseline_a_signal_must_beat():
    rows = _rows([0, 1] * 4)
    for i, r in enumerate(rows):
        r["prompts"] = {"NS": 1 + 5 * r["label"], "RS": i % 2}  # failing cases have more prompts
    res = audit.report(rows)
    assert res["baseline_prompt_count"] == 1.0
    from drift.evaluation.metrics import plan_case

    for case in load_cases("builtin")[:3]:  # the prompts the metrics compare, task by task
        plan = plan_case(case)
        expected = {m: len(plan.comparisons[m]) for m in ("NS", "RS", "DNS") if m in plan.comparisons}
        assert audit.prompt_counts(case) == expected


def test_merge_joins_audit_shards_under_the_audits_own_summary(tmp_path, tiny_dir, capsys):
    argv = ["audit", "--model", tiny_dir, "--limit", "4", "--steps", "1", "--validate", "--quiet"]
    for part in ("1/2", "2/2"):
        assert main(argv + ["--shard", part, "--out", str(tmp_path / f"{part[0]}.json")]) == 0
    capsys.readouterr()
    out = tmp_path / "all.json"
    assert main(["merge", str(tmp_path / "1.json"), str(tmp_path / "2.json"), "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    rows = [r for p in ("1", "2") for r in json.loads((tmp_path / f"{p}.json").read_text())["cases"]]
    assert merged["cases"] == rows and merged["config"]["command"] == "audit"
    expected = audit.report(rows)
    assert merged["summary"]["signals"] == pytest.approx(expected["signals"], nan_ok=True)
    assert "wrote" in capsys.readouterr().out


def test_a_validated_audit_draws_its_calibration(tmp_path, capsys):
    rows = [dict(r, case_id=str(i), subject="s") for i, r in enumerate(_rows([0, 1] * 4))]
    config = {"command": "audit", "validate": True, "editor": "rome", "data": "builtin"}
    (tmp_path / "a.json").write_text(json.dumps({"config": config, "summary": {}, "cases": rows}))
    assert main(["merge", str(tmp_path / "a.json"), "--out", str(tmp_path / "all.json")]) == 0
    bins = json.loads((tmp_path / "all.json").read_text())["summary"]["calibration"]
    assert sum(b["n"] for b in bins) == 8
    assert (tmp_path / "all_calibration.png").stat().st_size > 1000
    assert "all_calibration.html" in capsys.readouterr().out
