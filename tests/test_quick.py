"""drift.edit: one fact in one line, and EditCase.simple."""

from __future__ import annotations

import pytest
import torch

import drift
from drift.data import CaseError, EditCase, load_cases
from drift.quick import greedy_answer


def test_simple_case_is_checked_like_a_loaded_one():
    case = EditCase.simple(
        "The Louvre is in", "Louvre", "Rome", "Paris", neighbours={"The Orsay museum is in": "Paris"}
    )
    assert (case.subject, case.o_edit, case.o_true) == ("Louvre", "Rome", "Paris")
    assert case.distracting[0].prompt == "The Louvre is in Rome. The Orsay museum is in"
    with pytest.raises(CaseError, match="requested_rewrite.subject 'Eiffel' is not in the prompt"):
        EditCase.simple("The Louvre is in", "Eiffel", "Rome", "Paris")
    with pytest.raises(CaseError, match="target_new"):
        EditCase.simple("The Louvre is in", "Louvre", " ", "Paris")


def test_edit_refuses_an_unknown_hyper_parameter_before_computing(tiny):
    with pytest.raises(ValueError, match="has no hyper-parameter 'stepz'"):
        drift.edit(tiny, "The Louvre is in", subject="Louvre", target="Rome", target_true="Paris", stepz=3)


def test_greedy_answer_is_the_models_own_first_word(tiny):
    answer = greedy_answer(tiny, "The Louvre is in")
    assert answer and " " not in answer


def test_one_line_edit_on_the_default_model(real):
    prompt = "The Colosseum is located in the city of"
    assert greedy_answer(real, prompt) == "Rome"
    e = drift.edit(real, prompt, subject="Colosseum", target="Athens")  # target_true: the model's "Rome"
    before = real.target_prob(prompt, "Athens")
    with e.applied(real):
        assert real.target_prob(prompt, "Athens") > max(0.5, real.target_prob(prompt, "Rome"))
    assert real.target_prob(prompt, "Athens") == before


# ---- top-level names ------------------------------------------------------------------------------
def test_every_public_name_resolves_and_import_drift_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, drift\n"
        "print('torch' in sys.modules)\n"
        "missing = [n for n in drift.__all__ if getattr(drift, n, None) is None]\n"
        "print(missing)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["False", "[]"]  # light to import; every name resolves
    from drift.editors import get_compute, get_editor
    from drift.editors.sadr import SADR

    assert (drift.get_editor, drift.get_compute, drift.SADR) == (get_editor, get_compute, SADR)
    assert drift.interp.__name__ == "drift.interp"  # packages on first use
    with pytest.raises(AttributeError, match="no attribute 'evaluat'"):
        drift.evaluat


def test_drift_evaluate_is_the_evaluation_function(tiny):
    from drift.evaluation.evaluate import evaluate
    from drift.evaluation.spec import EvalSpec

    assert drift.evaluate is evaluate
    cases = load_cases("builtin", limit=1)
    assert drift.EvalSpec is EvalSpec
    assert drift.evaluate(tiny, cases, spec=drift.EvalSpec(fluency=False), progress=False) == evaluate(
        tiny, cases, None, EvalSpec(fluency=False), progress=False
    )


# ---- lists, and edit-and-score --------------------------------------------------------------------
FACTS = dict(
    prompt=["The Eiffel Tower is located in the city of", "The Louvre is located in the city of"],
    subject=["Eiffel Tower", "Louvre"],
    target=["Rome", "Berlin"],
    target_true=["Paris", "Paris"],
)


def test_a_list_edit_is_one_batched_computation_applying_every_fact(tiny):
    from drift.editors import get_compute

    facts = dict(FACTS)
    both = drift.edit(tiny, facts.pop("prompt"), **facts, layer=0, steps=3, verbose=False)
    assert both.info["cases"] == 2 and [e["batch"] for e in both.info["edits"]] == [2, 2]
    cases = [
        EditCase.simple(p, s, t, tt, case_id=f"custom-{i}")
        for i, (p, s, t, tt) in enumerate(zip(*FACTS.values()))
    ]
    alone = get_compute("rome", layer=0, steps=3).many(tiny, cases)
    summed = sum(d.delta for e in alone for d in e.deltas)
    (delta,) = both.deltas  # one rank-one update per fact, at one weight: added together
    torch.testing.assert_close(delta.delta, summed)
    before = [tiny.target_prob(p, t) for p, t in zip(FACTS["prompt"], FACTS["target"])]
    with both.applied(tiny):
        after = [tiny.target_prob(p, t) for p, t in zip(FACTS["prompt"], FACTS["target"])]
    assert all(a != b for a, b in zip(after, before))  # (a random model: moved, not raised)
    assert [tiny.target_prob(p, t) for p, t in zip(FACTS["prompt"], FACTS["target"])] == before


def test_list_arguments_are_checked_before_any_work(tiny):
    with pytest.raises(ValueError, match="2 prompts but 1 values of target"):
        drift.edit(tiny, FACTS["prompt"], subject=FACTS["subject"], target=["Rome"])
    with pytest.raises(ValueError, match="subject must be a list of 2"):
        drift.edit(tiny, FACTS["prompt"], subject="Louvre", target=FACTS["target"])
    with pytest.raises(ValueError, match="subject is a list but prompt is one string"):
        drift.edit(tiny, FACTS["prompt"][0], subject=FACTS["subject"], target="Rome")


def test_edit_and_score_gives_the_metrics_before_and_after(tiny):
    cases = load_cases("builtin", limit=2)
    table = drift.edit_and_score(tiny, cases, layer=0, steps=3, verbose=False)
    assert table.cases == [str(c.case_id) for c in cases] or table.cases == [c.case_id for c in cases]
    no_fluency = drift.EvalSpec(fluency=False)
    plain = drift.evaluate(tiny, cases, spec=no_fluency, progress=False)
    edited = drift.evaluate(tiny, cases, drift.get_editor("rome", layer=0, steps=3), no_fluency)
    for row in table.rows:
        i = [c.case_id for c in cases].index(row["case_id"])
        assert row["before"] == plain[i]["metrics"][row["metric"]]
        assert row["after"] == pytest.approx(edited[i]["metrics"][row["metric"]], abs=1e-9)
    assert all(r["after"] != r["before"] for r in table.rows if r["metric"] == "EM")  # edited
    text = repr(table)
    assert text.startswith("ScoreTable(rome, 2 cases") and "before" in text and "EM" in text
    assert len(text.splitlines()) == 2 + len(table.rows)
    frame = table.to_frame()
    assert list(frame.columns) == ["case_id", "subject", "metric", "before", "after"]
    assert len(frame) == len(table.rows) and frame["after"].tolist() == [r["after"] for r in table.rows]
    assert set(table.mean()) == set(table.metrics)


def test_edit_and_score_takes_prompts_and_one_edit_of_all(tiny):
    facts = dict(FACTS)
    prompts = facts.pop("prompt")
    table = drift.edit_and_score(tiny, prompts, **facts, together=True, layer=0, steps=3, verbose=False)
    assert table.metrics == ["ES", "EM"] and table.cases == ["custom-0", "custom-1"]
    assert len(table.edits) == 1 and table.edits[0].info["cases"] == 2
    with pytest.raises(ValueError, match="prompts need subject= and target="):
        drift.edit_and_score(tiny, prompts)
    with pytest.raises(ValueError, match="EditCases carry their own"):
        drift.edit_and_score(tiny, load_cases("builtin", limit=1), target="Rome")


def test_a_list_edit_writes_every_fact_on_the_default_model(real):
    facts = dict(FACTS)
    prompts = facts.pop("prompt")
    both = drift.edit(real, prompts, **facts, verbose=False)
    with both.applied(real):
        for p, new, old in zip(prompts, FACTS["target"], FACTS["target_true"]):
            assert real.target_prob(p, new) > max(0.5, real.target_prob(p, old))
