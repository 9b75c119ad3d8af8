"""`python -m drift eval` end to end (the real model's tests are slow), its errors, and resuming."""

from __future__ import annotations

import json

import pytest

from drift.__main__ import main
from drift.data import CaseError


def test_eval_writes_summary_and_cases(tmp_path, capsys, real):
    out = tmp_path / "r.json"
    assert (
        main(["eval", "--data", "builtin", "--limit", "3", "--no-fluency", "--quiet", "--out", str(out)]) == 0
    )
    res = json.loads(out.read_text())
    assert len(res["cases"]) == 3
    for k in ("ES", "EM", "PS", "NS", "RS", "DNS", "AvgS"):
        assert k in res["summary"]
    assert "NS" in capsys.readouterr().out
    assert not (tmp_path / "r.json.partial.jsonl").exists()


def test_eval_resumes_without_redoing_finished_cases(tmp_path, real, monkeypatch):
    out = tmp_path / "r.json"
    args = ["eval", "--data", "builtin", "--limit", "3", "--no-fluency", "--quiet", "--out", str(out)]
    import drift.evaluation.evaluate as ev

    real_group = ev._evaluate_group
    seen = []

    def interrupted(model, cases, *a, **k):
        if seen:  # the second group: pretend the user pressed Ctrl-C
            raise KeyboardInterrupt
        seen.extend(c.case_id for c in cases)
        return real_group(model, cases, *a, **k)

    monkeypatch.setattr(ev, "_evaluate_group", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(args + ["--batch-size", "1"])
    assert not out.exists() and len(seen) == 1
    redone = []

    def counting(model, cases, *a, **k):
        redone.extend(c.case_id for c in cases)
        return real_group(model, cases, *a, **k)

    monkeypatch.setattr(ev, "_evaluate_group", counting)
    assert main(args + ["--batch-size", "1"]) == 0
    assert seen[0] not in redone and len(redone) == 2
    assert len(json.loads(out.read_text())["cases"]) == 3


def test_unknown_editor_is_named(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown editor 'romee'"):
        main(["eval", "--editor", "romee", "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err  # the parser's one line, before anything is loaded
    assert err.startswith("error: unknown editor 'romee'") and len(err.strip().splitlines()) == 1


def test_sadr_without_an_editor_is_refused(tmp_path):
    with pytest.raises(
        ValueError, match="--sadr changes how an edit is computed, but --editor is none: add --editor rome"
    ):
        main(["eval", "--editor", "none", "--sadr", "0.01", "--out", str(tmp_path / "x.json")])


def test_sadr_alone_takes_the_papers_setting_for_the_editor(tmp_path, monkeypatch):
    import drift.editors as editors
    from drift.editors.sadr import SADR

    seen = {}

    def stop(name, **kw):
        seen.clear()
        seen.update(name=name, **kw)
        raise SystemExit(0)

    monkeypatch.setattr(editors, "get_editor", stop)
    # the default model (SmolLM2-135M): ROME's and MEMIT's are their validation grids' choices (γ 4e-2
    # at 20 and at 80 steps, results/validation/, results/validation-memit/), PMET keeps GPT-J's; on
    # GPT-J the paper's
    gpt_j = ["--model", "EleutherAI/gpt-j-6b"]
    for editor, model, gamma, steps in (
        ("rome", [], 4e-2, 20),
        ("rome", gpt_j, 1e-2, 80),
        ("memit", [], 4e-2, 80),
        ("memit", gpt_j, 5e-3, 20),
        ("pmet", [], 8e-2, 40),
    ):
        with pytest.raises(SystemExit):
            main(["eval", "--editor", editor, "--sadr", *model, "--out", str(tmp_path / "x.json")])
        (term,) = seen["extra_terms"]
        assert isinstance(term, SADR) and term.gamma == gamma and seen["steps"] == steps, (editor, model)
    with pytest.raises(SystemExit):  # a given γ keeps the editor's own steps
        main(["eval", "--editor", "rome", "--sadr", "0.5", "--out", str(tmp_path / "x.json")])
    assert seen["extra_terms"][0].gamma == 0.5 and "steps" not in seen
    with pytest.raises(ValueError, match="no SADR setting for editor 'adaple'"):
        main(["eval", "--editor", "adaple", "--sadr", "--out", str(tmp_path / "x.json")])


def test_bad_case_file_is_named(tmp_path):
    bad = tmp_path / "cases.json"
    bad.write_text('[{"case_id": 1, "requested_rewrite": {"prompt": "x is in", "subject": "x"}}]')
    with pytest.raises(CaseError, match="case 1: missing field 'requested_rewrite.target_new'"):
        main(["eval", "--data", str(bad), "--out", str(tmp_path / "x.json")])


def test_eval_with_rome_edits_and_restores(tmp_path, real):
    from tests.conftest import weights_hash

    h0 = weights_hash(real)
    out = tmp_path / "rome.json"
    assert (
        main(
            [
                "eval",
                "--data",
                "builtin",
                "--editor",
                "rome",
                "--limit",
                "1",
                "--no-fluency",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert res["summary"]["ES"] == 100.0
    assert weights_hash(real) == h0


@pytest.mark.parametrize("editor", ["memit", "adaple"])
def test_eval_sequential_stacks_edits_and_reports_checkpoints(tmp_path, capsys, editor, tiny_dir):
    """`--sequential` on a tiny model saved to a folder (the path a local checkpoint takes)."""
    out = tmp_path / "seq.json"
    assert (
        main(
            [
                "eval",
                "--model",
                tiny_dir,
                "--data",
                "builtin",
                "--limit",
                "3",
                "--editor",
                editor,
                "--sequential",
                "--checkpoints",
                "1,2",
                "--steps",
                "1",
                "--dr",
                "0.5",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert [r["n_edits"] for r in res["checkpoints"]] == [1, 2, 3]
    assert [len(r["cases"]) for r in res["checkpoints"]] == [1, 2, 3]
    assert res["config"]["dr"] == 0.5 and res["config"]["sequential"] is True
    assert "after 3 edits:" in capsys.readouterr().out


def test_sequential_needs_an_editor_and_numeric_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="--sequential needs an editor"):
        main(["eval", "--sequential", "--out", str(tmp_path / "x.json")])
    with pytest.raises(ValueError, match="--checkpoints must be comma-separated"):
        main(
            [
                "eval",
                "--editor",
                "memit",
                "--sequential",
                "--checkpoints",
                "1,ten",
                "--out",
                str(tmp_path / "x.json"),
            ]
        )
