"""Sequential editing: edits stack, checkpoints evaluate earlier edits, the weights come back."""

from __future__ import annotations

import pytest

from drift.data import parse_case
from drift.editors.fusion import drop_and_rescale
from drift.editors.rome import ROMEHParams, compute_rome
from drift.evaluation.sequential import sequential_edits
from tests.conftest import weights_hash
from tests.test_rome import CORPUS

CASES = [
    parse_case(
        {
            "case_id": i,
            "requested_rewrite": {
                "prompt": f"The {s} is located in",
                "subject": s,
                "target_new": new,
                "target_true": old,
            },
            "rewrite": {"prompts": [f"The {s} is located in"], "targets": [new]},
        }
    )
    for i, (s, old, new) in enumerate(
        [("Eiffel Tower", "Paris", "Rome"), ("Colosseum", "Rome", "Athens"), ("Louvre", "Paris", "Berlin")]
    )
]
HP = ROMEHParams(layer=1, steps=2, n_prefixes=2, stats_texts=CORPUS)


def test_edits_stack_and_are_all_removed_at_the_end(tiny):
    h0 = weights_hash(tiny)
    seen = []

    def compute(model, case):
        seen.append(weights_hash(model))  # each edit is computed on the model carrying the earlier ones
        return compute_rome(model, case, HP)

    rows = sequential_edits(
        tiny,
        CASES,
        compute,
        checkpoints=(1, 3),
        progress=False,
        fuse=lambda e: drop_and_rescale(e, 0.5, seed=0),
    )
    assert [r["n_edits"] for r in rows] == [1, 3]
    assert [len(r["cases"]) for r in rows] == [1, 3] and "ES" in rows[1]["summary"]
    assert seen[0] == h0 and len(set(seen)) == 3
    assert weights_hash(tiny) == h0


def test_interruption_mid_run_restores_the_weights(tiny):
    h0 = weights_hash(tiny)
    calls = {"n": 0}

    def compute(model, case):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return compute_rome(model, case, HP)

    with pytest.raises(KeyboardInterrupt):
        sequential_edits(tiny, CASES, compute, checkpoints=(1,), progress=False)
    assert weights_hash(tiny) == h0


def test_an_interrupted_run_resumes_from_its_state_file(tiny, tmp_path):
    h0 = weights_hash(tiny)
    full = sequential_edits(
        tiny, CASES, lambda m, c: compute_rome(m, c, HP), checkpoints=(1, 3), progress=False
    )
    state = tmp_path / "run.state"
    calls = []

    def interrupted(model, case):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(case.case_id)
        return compute_rome(model, case, HP)

    with pytest.raises(KeyboardInterrupt):
        sequential_edits(tiny, CASES, interrupted, checkpoints=(1, 3), progress=False, state=state)
    assert weights_hash(tiny) == h0 and state.exists()
    redone = []

    def counting(model, case):
        redone.append(case.case_id)
        return compute_rome(model, case, HP)

    resumed = sequential_edits(tiny, CASES, counting, checkpoints=(1, 3), progress=False, state=state)
    assert redone == [CASES[2].case_id]  # the two finished edits are not computed again
    assert [r["n_edits"] for r in resumed] == [1, 3]
    for a, b in zip(full, resumed, strict=True):
        assert a["summary"]["ES"] == b["summary"]["ES"]
        assert abs(a["cases"][-1]["metrics"]["EM"] - b["cases"][-1]["metrics"]["EM"]) < 1e-3
    assert weights_hash(tiny) == h0 and not state.exists()


def test_a_state_file_of_another_run_or_damaged_is_ignored(tiny, tmp_path):
    state = tmp_path / "run.state"
    state.write_bytes(b"not a state")
    seen = []
    sequential_edits(
        tiny,
        CASES[:2],
        lambda m, c: seen.append(c.case_id) or compute_rome(m, c, HP),
        checkpoints=(2,),
        progress=False,
        state=state,
    )
    assert seen == [CASES[0].case_id, CASES[1].case_id]


@pytest.mark.integration
def test_sequential_script_writes_its_figures_and_reuses_finished_runs(tmp_path, tiny_dir, capsys):
    """`analyses/sequential.py` end to end on a tiny model saved to a folder, then rerun:
    nothing is recomputed."""
    import json

    from tests.conftest import run_analysis

    out = tmp_path / "out"
    argv = [
        "--model",
        tiny_dir,
        "--data",
        "builtin",
        "--editors",
        "memit,adaple",
        "--edits",
        "3",
        "--checkpoints",
        "1,3",
        "--sweep-edits",
        "2",
        "--sweep-rates",
        "0.5,0.9",
        "--sim-edits",
        "3",
        "--out-dir",
        out,
    ]
    run_analysis("sequential", argv, capsys)
    res = json.loads((out / "sequential.json").read_text())
    assert set(res["curves"]) == {"MEMIT", "MEMIT +DR(p=0.8)", "ADAPLE", "ADAPLE +DR(p=0.8)"}
    assert [c["n_edits"] for c in res["curves"]["ADAPLE"]] == [1, 3]
    assert set(res["drop_rate_sweep"]) == {"0.5", "0.9"}
    sim = res["similarity"]["MEMIT"]
    assert len(sim["as computed"]) == 3 and abs(sim["as computed"][0][0] - 1) < 1e-5
    for stem in ("attenuation_ES", "drop_rate_sweep", "update_similarity"):
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.html").exists()
    runs = (out / "sequential-runs.jsonl").read_text()
    assert len(runs.splitlines()) == 6 and not list(out.glob(".partial-*"))
    _, stderr = run_analysis("sequential", argv, capsys)
    assert (out / "sequential-runs.jsonl").read_text() == runs
    assert "sequential edits" not in stderr  # no run was computed again


def test_a_metric_missing_at_a_checkpoint_is_a_gap_not_an_error():
    """On the dev set the first case has no paraphrases, so PS is absent after one edit: the
    attenuation figure gets a gap there (None) and keeps the later points."""
    from tests.conftest import load_analysis

    script = load_analysis("sequential")
    checkpoints = [
        {"n_edits": 1, "summary": {"ES": 0.0}},
        {"n_edits": 10, "summary": {"ES": 70.0, "PS": 100.0}},
    ]
    assert script.series(checkpoints, "PS") == [None, 100.0]
    assert script.series(checkpoints, "ES") == [0.0, 70.0]
