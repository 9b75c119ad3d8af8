"""Long calls show a bar by default, nothing with ``verbose=False``, and a loss line per step with
``verbose=True``; loading a model prints no bar of transformers'."""

from __future__ import annotations

import logging

import pytest

import drift
from drift.data import load_cases
from drift.evaluation.evaluate import evaluate
from drift.evaluation.spec import EvalSpec
from drift.interp import tracing
from drift.util import progress

EIFFEL = dict(subject="Eiffel Tower", target="Rome", target_true="Paris", layer=0, steps=3)
PROMPT = "The Eiffel Tower is located in the city of"


@pytest.fixture(autouse=True)
def _as_a_fresh_process():
    """Progress as in a fresh Python process (an in-process command-line test may have set it)."""
    token = progress._SHOWN.set(None)
    yield
    progress._SHOWN.reset(token)


def _drift_lines(caplog, level=logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("drift") and r.levelno == level]


def test_an_edit_shows_a_bar_by_default_and_nothing_when_silenced(tiny, caplog, capsys):
    drift.edit(tiny, PROMPT, **EIFFEL)
    err = capsys.readouterr().err
    assert "editing 1 case" in err and "/3 " in err  # tqdm's bar over the optimisation steps
    assert _drift_lines(caplog) == []  # a bar, not log lines
    drift.edit(tiny, PROMPT, **EIFFEL, verbose=False)
    assert capsys.readouterr().err == ""
    assert _drift_lines(caplog) == []


def test_a_verbose_edit_logs_its_loss_at_every_step(tiny, caplog):
    before = logging.getLogger("drift").level  # an in-process command-line test may have set it
    e = drift.edit(tiny, PROMPT, **EIFFEL, verbose=True)
    steps = [m for m in _drift_lines(caplog) if " step " in m]
    assert len(steps) == len(e.info["losses"]) >= 1
    assert steps[0].startswith("case ") and "step 1/3: loss " in steps[0] and "nll " in steps[0]
    assert logging.getLogger("drift").level == before  # restored after the call
    assert progress.enabled() is progress.DEFAULT


def test_verbose_lines_reach_stderr_without_any_logging_set_up(tiny, capsys, monkeypatch):
    # a plain script: nobody configured logging (in-process command-line tests may have)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logging.getLogger("drift"), "handlers", [])
    drift.edit(tiny, PROMPT, **EIFFEL, verbose=True)
    err = capsys.readouterr().err
    assert "drift.editors.target: case " in err and "step 1/3" in err
    drift.edit(tiny, PROMPT, **EIFFEL)
    assert "step 1/3" not in capsys.readouterr().err
    assert logging.getLogger("drift").handlers == []  # the temporary handler is gone


@pytest.fixture(scope="module")
def tiny_edit(tiny):
    return drift.edit(tiny, PROMPT, **EIFFEL, verbose=False)


def test_tracing_shows_a_bar_unless_silenced(tiny, tiny_edit, capsys):
    p = tracing.distracting_prompt(tiny, load_cases("builtin")[0])
    tracing.attention_patching(tiny, tiny_edit, p, window=1, batch_size=1)
    assert "patching" in capsys.readouterr().err
    tracing.attention_patching(tiny, tiny_edit, p, window=1, batch_size=1, verbose=False)
    assert capsys.readouterr().err == ""


def test_evaluation_shows_one_bar_and_runs_each_edit_quietly(tiny, capsys, caplog):
    cases = load_cases("builtin", limit=2)
    edit_fn = drift.get_editor("rome", layer=0, steps=2)
    evaluate(tiny, cases, edit_fn, EvalSpec(fluency=False))
    err = capsys.readouterr().err
    assert "evaluating" in err and "2/2" in err
    assert "editing" not in err and _drift_lines(caplog) == []  # each edit's own bar stays hidden
    evaluate(tiny, cases, edit_fn, EvalSpec(fluency=False), progress=False)
    assert capsys.readouterr().err == ""
    evaluate(tiny, cases, edit_fn, EvalSpec(fluency=False), progress=True)
    assert "evaluating" in capsys.readouterr().err
    assert [m for m in _drift_lines(caplog) if " step " in m] == []


def test_sequential_edits_and_the_audit_show_one_bar_unless_silenced(tiny, capsys):
    from drift.editors import get_compute
    from drift.evaluation.sequential import sequential_edits
    from drift.interp.audit import audit_cases

    cases = load_cases("builtin", limit=2)
    compute = get_compute("rome", layer=0, steps=1)
    sequential_edits(tiny, cases, compute, checkpoints=(2,))
    err = capsys.readouterr().err
    assert "sequential edits" in err and "editing" not in err
    sequential_edits(tiny, cases, compute, checkpoints=(2,), progress=False)
    assert capsys.readouterr().err == ""
    audit_cases(tiny, cases[:1], compute, edit_batch=1)
    err = capsys.readouterr().err
    assert "auditing" in err and "editing" not in err
    audit_cases(tiny, cases[:1], compute, edit_batch=1, progress=False)
    assert capsys.readouterr().err == ""


def test_loading_a_model_prints_no_bar_of_transformers(tiny_dir, capsys):
    from transformers.utils import logging as tf_logging

    before = tf_logging.is_progress_bar_enabled()
    drift.load_model(tiny_dir)
    err = capsys.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err
    assert tf_logging.is_progress_bar_enabled() == before  # transformers' own setting is kept


def test_nested_calls_inherit_and_inner_false_wins(caplog):
    log = logging.getLogger("drift.test")
    with progress.verbose(True):
        log.info("shown")
        with progress.verbose(None):
            assert progress.enabled()
        with progress.verbose(False):
            assert not progress.enabled()
            log.info("hidden")
    log.info("hidden too")
    assert _drift_lines(caplog) == ["shown"]


def test_command_line_verbosity(tiny_dir, tmp_path, capsys):
    from drift.__main__ import main

    args = ["eval", "--model", tiny_dir, "--limit", "1", "--no-fluency"]
    try:
        main(["-q", *args, "--out", str(tmp_path / "q.json")])
        assert "evaluating" not in capsys.readouterr().err
        assert logging.getLogger("drift").level == logging.ERROR
        main(["-v", *args, "--out", str(tmp_path / "v.json")])
        assert logging.getLogger("drift").level == logging.INFO and progress.enabled()
    finally:
        progress.configure(0)
