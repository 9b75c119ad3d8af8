"""Long calls are silent by default and show a bar or a loss line per step when asked."""

from __future__ import annotations

import logging

import pytest

import drift
from drift.data import load_cases
from drift.evaluation.evaluate import evaluate
from drift.interp import tracing
from drift.util import progress

EIFFEL = dict(subject="Eiffel Tower", target="Rome", target_true="Paris", layer=0, steps=3)
PROMPT = "The Eiffel Tower is located in the city of"


def _drift_lines(caplog, level=logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("drift") and r.levelno == level]


def test_an_edit_is_silent_by_default(tiny, caplog, capsys):
    drift.edit(tiny, PROMPT, **EIFFEL)
    assert _drift_lines(caplog) == []
    assert capsys.readouterr().err == ""


def test_a_verbose_edit_logs_its_loss_at_every_step(tiny, caplog):
    before = logging.getLogger("drift").level  # an in-process command-line test may have set it
    e = drift.edit(tiny, PROMPT, **EIFFEL, verbose=True)
    steps = [m for m in _drift_lines(caplog) if " step " in m]
    assert len(steps) == len(e.info["losses"]) >= 1
    assert steps[0].startswith("case ") and "step 1/3: loss " in steps[0] and "nll " in steps[0]
    assert logging.getLogger("drift").level == before  # restored after the call
    assert not progress.enabled()


def test_verbose_lines_reach_stderr_without_any_logging_set_up(tiny, capsys, monkeypatch):
    # a plain script: nobody configured logging (in-process command-line tests may have)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logging.getLogger("drift"), "handlers", [])
    drift.edit(tiny, PROMPT, **EIFFEL, verbose=True)
    err = capsys.readouterr().err
    assert "drift.editors.target: case " in err and "step 1/3" in err
    drift.edit(tiny, PROMPT, **EIFFEL)
    assert capsys.readouterr().err == ""
    assert logging.getLogger("drift").handlers == []  # the temporary handler is gone


@pytest.fixture(scope="module")
def tiny_edit(tiny):
    return drift.edit(tiny, PROMPT, **EIFFEL)


def test_tracing_shows_a_bar_only_when_asked(tiny, tiny_edit, capsys):
    p = tracing.distracting_prompt(tiny, load_cases("builtin")[0])
    tracing.attention_patching(tiny, tiny_edit, p, window=1)
    assert "patching" not in capsys.readouterr().err
    tracing.attention_patching(tiny, tiny_edit, p, window=1, verbose=True, batch_size=1)
    assert "patching" in capsys.readouterr().err


def test_evaluation_shows_one_bar_and_runs_each_edit_quietly(tiny, tiny_edit, capsys, caplog):
    cases = load_cases("builtin", limit=2)
    edit_fn = drift.editors.get_editor("rome", layer=0, steps=2)
    evaluate(tiny, cases, edit=edit_fn, fluency=False)
    assert capsys.readouterr().err == "" and _drift_lines(caplog) == []
    evaluate(tiny, cases, edit=edit_fn, fluency=False, verbose=True)
    assert "evaluating" in capsys.readouterr().err
    assert [m for m in _drift_lines(caplog) if " step " in m] == []


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

    try:
        main(
            [
                "-q",
                "eval",
                "--model",
                tiny_dir,
                "--limit",
                "1",
                "--no-fluency",
                "--out",
                str(tmp_path / "q.json"),
            ]
        )
        assert "evaluating" not in capsys.readouterr().err
        assert logging.getLogger("drift").level == logging.ERROR
        main(
            [
                "-v",
                "eval",
                "--model",
                tiny_dir,
                "--limit",
                "1",
                "--no-fluency",
                "--out",
                str(tmp_path / "v.json"),
            ]
        )
        assert logging.getLogger("drift").level == logging.INFO and progress.enabled()
    finally:
        progress.configure(0)
        progress._SHOWN.set(False)
