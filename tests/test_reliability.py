"""Inputs that used to give silent wrong numbers or raw tracebacks (issue: reliability II)."""

from __future__ import annotations

import json

import pytest
import torch

from drift.__main__ import cli, main
from drift.data import CaseError, load_cases
from drift.editors.base import Edit, WeightDelta
from tests.test_data import MERGED


def _delta(model, scale=1.0):
    return Edit([WeightDelta("mlp_out", 0, scale * torch.ones_like(model.weight("mlp_out", 0)))])


def test_duplicate_case_ids_are_refused_naming_both(tmp_path):
    path = tmp_path / "cases.json"
    path.write_text(
        json.dumps(
            [MERGED, {**MERGED, "requested_rewrite": {**MERGED["requested_rewrite"], "target_new": "Oslo"}}]
        )
    )
    with pytest.raises(CaseError, match=r"cases #0 and #1 share case_id '7'"):
        load_cases(path)


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_below_one_is_refused(limit):
    with pytest.raises(CaseError, match=f"limit must be at least 1, got {limit}"):
        load_cases("builtin", limit=limit)


def test_an_empty_shard_is_refused_before_the_model_loads(tmp_path):
    with pytest.raises(ValueError, match=r"--shard 1/3 of 2 case\(s\) is empty"):
        main(["eval", "--limit", "2", "--shard", "1/3", "--out", str(tmp_path / "x.json")])


def test_applying_the_same_edit_twice_is_refused(tiny):
    w0 = tiny.weight("mlp_out", 0).detach().clone()
    e = _delta(tiny)
    with e.applied(tiny):
        with pytest.raises(RuntimeError, match="already applied"):
            e.apply(tiny)
        assert torch.equal(tiny.weight("mlp_out", 0), w0 + 1)
    assert torch.equal(tiny.weight("mlp_out", 0), w0)


def test_leaving_a_block_removes_edits_applied_inside_it_too(tiny):
    w0 = tiny.weight("mlp_out", 0).detach().clone()
    outer, inner = _delta(tiny), _delta(tiny, 2.0)
    with pytest.raises(KeyError):
        with outer.applied(tiny):
            inner.apply(tiny)  # never removed by the caller
            raise KeyError("boom")
    assert torch.equal(tiny.weight("mlp_out", 0), w0)
    assert not getattr(tiny, "_applied_edits", [])


def test_statistics_are_not_built_from_an_edited_model(tiny):
    from drift.editors.stats import key_second_moment

    with _delta(tiny, 0.01).applied(tiny):
        with pytest.raises(RuntimeError, match="carries 1 applied edit"):
            key_second_moment(tiny, [1], texts=["A text never seen before, so nothing is cached for it."])


def test_the_console_entry_prints_one_line_errors(tmp_path, capsys):
    assert cli(["eval", "--editor", "nope", "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown editor 'nope'") and "Traceback" not in err
    assert cli(["eval", "--data", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_bad_out_steps_and_hp_values_are_refused_before_the_model_loads(tmp_path, monkeypatch):
    import drift

    monkeypatch.setattr(drift, "load_model", lambda *a, **k: pytest.fail("the model should not load"))
    with pytest.raises(ValueError, match="is a folder"):
        main(["eval", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        main(["eval", "--editor", "rome", "--steps", "0", "--out", str(tmp_path / "x.json")])
    with pytest.raises(ValueError, match=r"'steps' of editor 'rome' takes a int .* got 'abc'"):
        main(["eval", "--editor", "rome", "--hp", "steps=abc", "--out", str(tmp_path / "x.json")])
    with pytest.raises(ValueError, match=r"'block_attention_grad' .* takes a bool"):
        main(
            ["eval", "--editor", "rome", "--hp", "block_attention_grad=3", "--out", str(tmp_path / "x.json")]
        )


def test_case_files_that_are_folders_or_not_utf8_are_named(tmp_path):
    with pytest.raises(CaseError, match="is a folder"):
        load_cases(tmp_path)
    bad = tmp_path / "latin1.json"
    bad.write_bytes('[{"case_id": "é"}]'.encode("latin-1"))
    with pytest.raises(CaseError, match=r"latin1.json is not UTF-8 text"):
        load_cases(bad)


def test_results_files_follow_the_umask(tmp_path):
    import os

    from drift.store import save_json

    old = os.umask(0o022)
    try:
        save_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


def _json():
    from hypothesis import strategies as st

    leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    return st.recursive(
        leaves,
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
        max_leaves=12,
    )


def _case_like():
    """Mostly well-formed cases with one part replaced by arbitrary JSON."""
    from hypothesis import strategies as st

    keys = [
        "requested_rewrite",
        "rewrite",
        "l-neighbor",
        "l-relation",
        "p-paraphrase",
        "o-commonsense",
        "case_id",
    ]
    return st.builds(lambda k, v: {**MERGED, k: v}, st.sampled_from(keys), _json()) | st.builds(
        lambda k, v: {**MERGED, "requested_rewrite": {**MERGED["requested_rewrite"], k: v}},
        st.sampled_from(["prompt", "subject", "target_new", "target_true"]),
        _json(),
    )


def test_any_json_gives_a_case_or_a_case_error_naming_a_field():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from drift.data import parse_case

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(_json(), _case_like()))
    def check(raw):
        try:
            parse_case(raw)
        except CaseError as e:
            assert str(e).startswith("case, case ")

    check()


def test_a_cache_that_refuses_writes_keeps_statistics_in_memory_with_a_warning(tiny, monkeypatch):
    import drift.editors.stats as stats

    def refuse(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(stats, "save_tensors", refuse)
    with pytest.warns(UserWarning, match=r"could not save key statistics to .*Permission denied"):
        C = stats.key_second_moment(tiny, [1], texts=["Some text to take key statistics from, never cached."])
    assert C[1].shape == (tiny.cfg.d_mlp, tiny.cfg.d_mlp) and torch.isfinite(C[1]).all()


def test_a_prompt_beyond_the_context_names_its_case(tiny):
    from drift.data import parse_case
    from drift.evaluate import evaluate

    long = dict(MERGED, case_id="long-one")
    long["l-neighbor"] = {"prompts": ["word " * 400], "targets": ["Paris"]}
    with pytest.raises(
        ValueError, match=r"case\(s\) long-one: a prompt of \d+ tokens exceeds the model's context"
    ):
        evaluate(tiny, [parse_case(long)], fluency=False, progress=False)


def test_ctrl_c_says_how_many_cases_are_saved_and_where(tmp_path, tiny_dir, monkeypatch, capsys):
    import drift.evaluate as ev

    real_evaluate = ev.evaluate

    def interrupted(model, cases, *, on_case, **kw):  # one case finishes, then Ctrl-C
        real_evaluate(model, cases[:1], on_case=on_case, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(ev, "evaluate", interrupted)
    out = tmp_path / "r.json"
    args = ["eval", "--model", tiny_dir, "--limit", "3", "--no-fluency", "--quiet", "--out", str(out)]
    assert cli(args) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err == f"interrupted; 1 of 3 cases saved in {out}.partial.jsonl; run the same command again to resume"
    )
