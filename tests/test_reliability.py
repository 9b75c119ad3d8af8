"""Bad inputs and interrupted runs: each is refused with a one-line reason or resumed, never turned
into silently wrong numbers or a raw traceback."""

from __future__ import annotations

import json
import re

import pytest
import torch

from drift.__main__ import cli, main
from drift.data import CaseError, load_cases
from drift.editors.base import Edit, WeightDelta, applied_edits
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
    assert not applied_edits(tiny)


def test_statistics_are_not_built_from_an_edited_model(tiny):
    from drift.editors.stats import key_second_moment

    with _delta(tiny, 0.01).applied(tiny):
        with pytest.raises(RuntimeError, match="carries 1 applied edit"):
            key_second_moment(tiny, [1], texts=["A text never seen before, so nothing is cached for it."])


def test_the_edited_model_guard_sees_edits_made_through_another_wrapper(tiny, tmp_path, monkeypatch):
    """An edit applied through ``m2 = drift.load_model(m.hooked)`` is in ``m``'s weights too:
    neither key statistics nor context prefixes are built from them through ``m`` (before, the
    guard read only the wrapper's own record, so sampled prefixes of the edited model were cached)."""
    import drift
    from drift.editors.context import generated_prefixes
    from drift.editors.stats import key_second_moment

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    m2 = drift.load_model(tiny.hooked)
    with _delta(tiny, 0.01).applied(m2):
        with pytest.raises(RuntimeError, match="carries 1 applied edit"):
            key_second_moment(tiny, [1], texts=["Another text nothing is cached for."])
        with pytest.raises(RuntimeError, match="carries 1 applied edit"):
            generated_prefixes(tiny, ((3, 5),))
    assert not list(tmp_path.rglob("*.json")) and not list(tmp_path.rglob("*.safetensors"))


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

    from drift.util.store import save_json

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
    from drift.evaluation.evaluate import evaluate
    from drift.evaluation.spec import EvalSpec

    long = dict(MERGED, case_id="long-one")
    long["l-neighbor"] = {"prompts": ["word " * 400], "targets": ["Paris"]}
    with pytest.raises(
        ValueError, match=r"case\(s\) long-one: a prompt of \d+ tokens exceeds the model's context"
    ):
        evaluate(tiny, [parse_case(long)], spec=EvalSpec(fluency=False), progress=False)


def test_ctrl_c_says_how_many_cases_are_saved_and_where(tmp_path, tiny_dir, monkeypatch, capsys):
    import drift.evaluation.evaluate as ev

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


# ---- a run is its inputs' contents; nothing overwritten, nothing silently damaged ----


def _case_file(tmp_path, name="cases.json"):
    """drift's built-in cases copied into a file of their own (to be edited by a test)."""
    from importlib import resources

    path = tmp_path / name
    path.write_text(resources.files("drift").joinpath("cases/builtin.json").read_text())
    return path


def _retarget(path, index=0, target="Oslo"):
    """The case file with case ``index``'s ``target_new`` edited in place."""
    cases = json.loads(path.read_text())
    cases[index]["requested_rewrite"]["target_new"] = target
    path.write_text(json.dumps(cases))


def _tiny_eval(tiny_dir, out, *extra):
    base = ["eval", "--model", tiny_dir, "--limit", "3", "--no-fluency", "--quiet", "--out", str(out)]
    return main(base + list(extra))


def test_a_case_file_changed_since_a_run_began_is_another_configuration(tiny_dir, tmp_path, monkeypatch):
    import drift.evaluation.evaluate as ev
    from drift.cli import sweep
    from drift.cli.runs import RunConflict

    data, out = _case_file(tmp_path), tmp_path / "r.json"
    real = ev._evaluate_group

    def stopping(model, cases, *a, **k):  # Ctrl-C after the first case
        if stopping.done:
            raise KeyboardInterrupt
        stopping.done = True
        return real(model, cases, *a, **k)

    stopping.done = False
    monkeypatch.setattr(ev, "_evaluate_group", stopping)
    with pytest.raises(KeyboardInterrupt):
        _tiny_eval(tiny_dir, out, "--data", str(data), "--batch-size", "1")
    monkeypatch.setattr(ev, "_evaluate_group", real)
    _retarget(data)  # the interrupted run's finished row was computed for "Rome"
    with pytest.raises(RunConflict, match=r"data_sha256 \(the case file's contents changed\).*--restart"):
        _tiny_eval(tiny_dir, out, "--data", str(data))
    assert _tiny_eval(tiny_dir, out, "--data", str(data), "--restart") == 0
    fresh = tmp_path / "fresh.json"
    assert _tiny_eval(tiny_dir, fresh, "--data", str(data)) == 0
    resumed, expected = json.loads(out.read_text()), json.loads(fresh.read_text())
    assert [r["metrics"] for r in resumed["cases"]] == [r["metrics"] for r in expected["cases"]]

    # merge: shards computed before and after the change are two configurations
    _case_file(tmp_path)
    assert _tiny_eval(tiny_dir, tmp_path / "s1.json", "--data", str(data), "--shard", "1/2") == 0
    _retarget(data)
    assert _tiny_eval(tiny_dir, tmp_path / "s2.json", "--data", str(data), "--shard", "2/2") == 0
    with pytest.raises(RunConflict, match="different configuration.*contents changed"):
        main(
            ["merge", str(tmp_path / "s1.json"), str(tmp_path / "s2.json"), "--out", str(tmp_path / "m.json")]
        )

    # sweep: a rerun after the change does not report the old results as finished
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'data = "{data}"\nlimit = 2\nno_fluency = true\nmodel = "{tiny_dir}"\n\n[[run]]\nname = "n"\n'
    )
    runs, _ = sweep.load(spec)
    sweep.execute(runs, tmp_path / "sw", engine="local", progress=False)
    _retarget(data, 1, "Lima")
    with pytest.raises(RunConflict, match="holds another configuration than run 'n'"):
        sweep.execute(sweep.load(spec)[0], tmp_path / "sw", engine="local", progress=False)


def test_a_finished_results_file_of_other_settings_is_not_overwritten(tiny_dir, tmp_path, capsys):
    from drift.cli.runs import RunConflict

    out = tmp_path / "r.json"
    assert _tiny_eval(tiny_dir, out, "--editor", "rome", "--steps", "1") == 0
    before = out.read_text()
    with pytest.raises(
        RunConflict, match=r"holds the finished results of 3 case\(s\) of another configuration"
    ):
        main(["eval", "--model", tiny_dir, "--limit", "1", "--no-fluency", "--quiet", "--out", str(out)])
    assert out.read_text() == before
    assert _tiny_eval(tiny_dir, out, "--editor", "rome", "--steps", "1") == 0  # the same settings: rewritten
    assert _tiny_eval(tiny_dir, out, "--restart") == 0
    aside = list(tmp_path.glob("r.json.aside-*"))
    assert len(aside) == 1 and json.loads(aside[0].read_text())["config"]["editor"] == "rome"
    assert json.loads(out.read_text())["config"]["editor"] == "none"
    assert "the earlier" in capsys.readouterr().err
    part = tmp_path / "part.json"
    assert _tiny_eval(tiny_dir, part, "--seed", "1") == 0
    with pytest.raises(RunConflict, match="another configuration.*seed"):
        main(["merge", str(part), "--out", str(out)])  # merge, too, keeps another run's results
    (tmp_path / "notes.json").write_text('{"mine": 1}')  # a file drift did not write
    with pytest.raises(RunConflict, match="not a results file of drift"):
        _tiny_eval(tiny_dir, tmp_path / "notes.json")


def test_inputs_and_outputs_that_are_the_same_file_are_refused(tiny_dir, tmp_path, monkeypatch, capsys):
    import drift

    monkeypatch.setattr(drift, "load_model", lambda *a, **k: pytest.fail("the model should not load"))
    data = _case_file(tmp_path)
    before = data.read_text()
    assert cli(["eval", "--data", str(data), "--out", str(data), "--restart"]) == 2
    assert "--out" in capsys.readouterr().err and data.read_text() == before
    monkeypatch.chdir(tmp_path)  # the same file by another name
    with pytest.raises(ValueError, match="is the same file as --data"):
        main(["eval", "--data", "cases.json", "--out", str(data)])
    with pytest.raises(ValueError, match="is the same file as --ppl"):
        main(["eval", "--ppl", str(data), "--out", str(data)])
    with pytest.raises(ValueError, match="is the same file as --data"):
        main(["audit", "--data", str(data), "--out", str(data)])
    part = tmp_path / "p.json"
    part.write_text(json.dumps({"config": {"editor": "none"}, "cases": [{"case_id": "0", "metrics": {}}]}))
    with pytest.raises(ValueError, match="is the same file as input"):
        main(["merge", str(part), "--out", str(part)])
    assert data.read_text() == before


def test_merge_names_missing_and_repeated_shards(tiny_dir, tmp_path, capsys):
    from drift.cli.runs import RunConflict

    parts = {}
    for shard in ("1/3", "2/3", "3/3"):
        parts[shard] = tmp_path / f"s{shard[0]}.json"
        assert _tiny_eval(tiny_dir, parts[shard], "--shard", shard) == 0
    out = tmp_path / "all.json"
    with pytest.raises(ValueError, match=r"missing shard\(s\) 2/3; 1 of 3 case\(s\) \(1\)"):
        main(["merge", str(parts["1/3"]), str(parts["3/3"]), "--out", str(out)])
    with pytest.raises(RunConflict, match="shard 1/3 is given twice"):
        main(["merge", str(parts["1/3"]), str(parts["1/3"]), str(parts["3/3"]), "--out", str(out)])
    assert not out.exists()
    assert cli(["merge", str(parts["1/3"]), str(parts["3/3"]), "--out", str(out)]) == 2
    assert "error: merge: the inputs are not the whole run: missing" in capsys.readouterr().err
    assert main(["merge", str(parts["1/3"]), str(parts["3/3"]), "--out", str(out), "--allow-missing"]) == 0
    assert json.loads(out.read_text())["missing"] == ["shard(s) 2/3", "1 of 3 case(s) (1)"]
    out.unlink()
    assert main(["merge", *map(str, parts.values()), "--out", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert [r["case_id"] for r in merged["cases"]] == ["0", "1", "2"] and "missing" not in merged
    with pytest.raises(ValueError, match="is a folder"):
        main(["merge", *map(str, parts.values()), "--out", str(tmp_path)])


def test_fluency_does_not_depend_on_how_many_cases_share_a_batch(tiny_dir, tmp_path):
    runs = {}
    for k in ("1", "3"):
        out = tmp_path / f"b{k}.json"
        args = ["eval", "--model", tiny_dir, "--limit", "3", "--quiet", "--batch-size", k, "--out", str(out)]
        assert main(args) == 0
        runs[k] = json.loads(out.read_text())
    assert all("FL" in r["metrics"] for r in runs["3"]["cases"])
    assert [r["generations"] for r in runs["1"]["cases"]] == [r["generations"] for r in runs["3"]["cases"]]
    assert runs["1"]["summary"]["FL"] == runs["3"]["summary"]["FL"]


TEMPLATE_CASE = {
    "case_id": "twice",
    "requested_rewrite": {
        "prompt": "{}, not Paris Hilton, is the capital of",
        "subject": "Paris",
        "target_new": "Italy",
        "target_true": "France",
    },
}


def test_the_edit_reads_the_subject_at_the_templates_slot(tiny):
    from drift.data import parse_case
    from drift.editors.target import build_batch

    case = parse_case(TEMPLATE_CASE)
    assert case.prompt == "Paris, not Paris Hilton, is the capital of" and case.subject_start == 0
    slot = tiny.span_positions(case.prompt, 0, len("Paris"))[-1]
    later = tiny.subject_positions(case.prompt, "Paris")[-1]  # the last occurrence: "Paris Hilton"
    assert later > slot
    batch, _, prompts = build_batch(tiny, case, ["", "Some context. "], start_layer=0)
    expected = [slot, tiny.span_positions(prompts[1], 14, 14 + len("Paris"))[-1]]
    assert batch.lookup[:2].tolist() == expected
    with pytest.raises(CaseError, match="has 2 '{}' slots"):
        parse_case(
            {**TEMPLATE_CASE, "requested_rewrite": {**TEMPLATE_CASE["requested_rewrite"], "prompt": "{} {}"}}
        )


def test_templates_with_repeated_subjects_put_the_subject_at_the_slot(tiny):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from drift.data import parse_case

    words = st.text(alphabet="abcdefgh ,.'", max_size=12)

    @settings(max_examples=150, deadline=None)
    @given(
        st.text(alphabet="ABCabc", min_size=1, max_size=6).filter(str.strip),
        st.lists(words, min_size=2, max_size=4),
        st.integers(0, 3),
    )
    def check(subject, pieces, slot):
        # the subject's text around the slot, alone and inside longer words
        parts = [p + subject + "s" if i % 2 else subject + " " + p for i, p in enumerate(pieces)]
        slot = min(slot, len(parts))
        template = " ".join(parts[:slot] + ["{}"] + parts[slot:])
        raw = {
            **TEMPLATE_CASE,
            "requested_rewrite": {
                **TEMPLATE_CASE["requested_rewrite"],
                "prompt": template,
                "subject": subject,
            },
        }
        case = parse_case(raw)
        at = template.index("{}")
        assert case.subject_start == at and case.prompt[:at] == template[:at]
        assert case.prompt[at : at + len(subject)] == subject
        assert case.subject_at("Prefix. " + case.prompt, 8) == at + 8
        positions = tiny.subject_positions(case.prompt, subject, start=case.subject_at(case.prompt))
        assert positions == tiny.span_positions(case.prompt, at, at + len(subject))

    check()


def test_an_empty_sweep_grid_is_refused():
    from drift.cli import sweep

    with pytest.raises(ValueError, match=r"run 1: 'steps' is an empty list, which would make no run"):
        sweep.expand({"editor": "rome", "run": [{"steps": []}]})
    with pytest.raises(ValueError, match=r"run 2: 'hp lr' is an empty list"):
        sweep.expand({"editor": "rome", "run": [{}, {"hp": {"lr": []}}]})
    with pytest.raises(ValueError, match=r"run 1: hp must be a table .* got 5"):
        sweep.expand({"editor": "rome", "run": [{"hp": 5}]})


def test_user_mistakes_are_one_line_errors(tiny_dir, tmp_path, monkeypatch, capsys):
    import drift

    out = str(tmp_path / "x.json")
    with monkeypatch.context() as mp:
        mp.setattr(drift, "load_model", lambda *a, **k: pytest.fail("the model should not load"))
        for hp, kind in (
            ("steps=2.5", "takes a int"),
            ("context=5", r"takes a tuple\[tuple\[int, int\], ...\]"),
        ):
            assert cli(["eval", "--editor", "rome", "--hp", hp, "--out", out]) == 2
            err = capsys.readouterr().err
            assert err.startswith("error: hyper-parameter") and "Traceback" not in err
            with pytest.raises(ValueError, match=kind):
                main(["eval", "--editor", "rome", "--hp", hp, "--out", out])
        texts = tmp_path / "texts.json"
        texts.write_text(json.dumps([{"Text": "fine"}, {"text": "lowercase key"}]))
        assert cli(["eval", "--ppl", str(texts), "--out", out]) == 2
        assert "--ppl" in (err := capsys.readouterr().err) and "entry 1" in err and "'Text'" in err
        fit = tmp_path / "fit.json"
        fit.write_text("[1, 2]")
        args = ["audit", "--validate", "--fit", str(fit), "--out", out]
        assert cli(args) == 2
        assert capsys.readouterr().err.startswith(f"error: --fit {fit}: expected the JSON object")
        spec = tmp_path / "s.toml"
        spec.write_text("[[run]]\nname = 5\n")
        assert cli(["sweep", str(spec), "--out-dir", str(tmp_path / "sw")]) == 2
        assert "name must be a non-empty string, got 5" in capsys.readouterr().err
    # a full disk when the results are written: one line, and the finished cases stay in the log
    import drift.cli.runs

    def full(path, obj):
        raise OSError(28, "No space left on device", str(path))

    with monkeypatch.context() as mp:
        mp.setattr(drift.cli.runs, "save_json", full)
        assert (
            cli(["eval", "--model", tiny_dir, "--limit", "2", "--no-fluency", "--quiet", "--out", out]) == 2
        )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"error: cannot write {out}: No space left on device") and "Traceback" not in err
    assert len(open(out + ".partial.jsonl").read().splitlines()) == 3  # header and both cases
    assert cli(["eval", "--model", tiny_dir, "--limit", "2", "--no-fluency", "--quiet", "--out", out]) == 0


def test_a_read_only_cache_is_a_one_line_error_or_used_from_memory(tiny, tmp_path, monkeypatch, capsys):
    import drift.editors.stats as stats
    import drift.model.loading as models
    from drift.editors.context import generated_prefixes

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path / "cache"))

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "cache"))

    monkeypatch.setattr(models, "building_dir", refuse)  # an empty cache that refuses writes
    assert cli(["demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: could not load model 'smollm2-135m': converting it once needs a writable")
    monkeypatch.setattr(stats, "save_json_checked", refuse)  # new context prefixes cannot be cached
    with pytest.warns(UserWarning, match="could not save the prefixes .*using it from memory"):
        groups = generated_prefixes(tiny, [(3, 5)], seed=12345)
    assert len(groups) == 2 and len(groups[1]) == 5


def test_with_an_editor_an_over_long_prompt_names_its_case(tiny):
    from drift.data import parse_case
    from drift.editors import get_editor
    from drift.evaluation.evaluate import evaluate
    from drift.evaluation.spec import EvalSpec

    long = dict(MERGED, case_id="long-one")
    long["requested_rewrite"] = {**MERGED["requested_rewrite"], "prompt": "word " * 200 + "{} is in"}
    with pytest.raises(ValueError, match=r"case\(s\) long-one: a prompt of \d+ tokens exceeds"):
        evaluate(
            tiny, [parse_case(long)], get_editor("rome", steps=1), EvalSpec(fluency=False), progress=False
        )


def test_a_diverging_edit_is_one_line_naming_the_case_and_what_to_change(tiny_dir, tmp_path, capsys):
    """47.18: a finite but far too large SADR γ (or step size) made a traceback (EditDiverged)."""
    out = tmp_path / "x.json"
    args = ["eval", "--model", tiny_dir, "--editor", "rome", "--limit", "1", "--no-fluency", "--quiet"]
    assert cli([*args, "--sadr", "1e300", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert re.match(r"error: edit of case \S+ diverged at step \d+: loss nan; nothing applied; ", err[0])
    assert err[0].endswith("a smaller step size (--hp lr=...) or SADR γ (--sadr) may keep it finite")
    assert not out.exists()


HAND_EDITS = {  # a results file edited by hand: what was done to it, and what the refusal names
    "no config": (lambda d: d.pop("config"), "(no 'config')"),
    "config a list": (lambda d: d.update(config=[1]), ": 'config' must be an object, got [1]"),
    "sadr a word": (
        lambda d: d["config"].update(sadr="big"),
        ": config.sadr must be a number or null, got 'big'",
    ),
    "cases a string": (lambda d: d.update(cases="abc"), ": 'cases' must be a list of case rows, got 'abc'"),
    "a row a number": (
        lambda d: d["cases"].append(3),
        ": cases[2] must be an object with case_id and metrics",
    ),
    "no case_id": (lambda d: d["cases"][1].pop("case_id"), ": cases[1].case_id must be a string or a whole"),
    "no metrics": (
        lambda d: d["cases"][0].pop("metrics"),
        ": cases[0] (case '0'): 'metrics' must be an object",
    ),
    "a metric a word": (
        lambda d: d["cases"][0]["metrics"].update(ES="high"),
        ": cases[0] (case '0'): metrics.ES must be a number or null, got 'high'",
    ),
}


def test_hand_edited_results_are_named_by_file_and_field_in_compare_and_merge(tiny_dir, tmp_path, capsys):
    """47.18: compare and merge of such files raised KeyError, TypeError or AttributeError."""
    good = tmp_path / "good.json"
    assert (
        cli(["eval", "--model", tiny_dir, "--limit", "2", "--no-fluency", "--quiet", "--out", str(good)]) == 0
    )
    assert [c["case_id"] for c in json.loads(good.read_text())["cases"]] == ["0", "1"]
    for what, (edit, message) in HAND_EDITS.items():
        data = json.loads(good.read_text())
        edit(data)
        bad = tmp_path / f"{what.replace(' ', '_')}.json"
        bad.write_text(json.dumps(data))
        merged = tmp_path / "merged.json"
        capsys.readouterr()
        for command, argv in (
            ("compare", [str(good), str(bad)]),
            ("merge", [str(bad), "--out", str(merged)]),
        ):
            assert cli([command, *argv]) == 2, what
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and err[0].startswith(f"error: {command}: {bad}"), (what, err)
            assert message in err[0], (what, err)
        assert not merged.exists()


def test_a_generation_prompt_beyond_the_context_names_its_case_and_samples_nothing(tiny, monkeypatch):
    """47.18: a 9,001-token generation prompt (SmolLM2's context is 8,192) was sampled from for
    minutes, or, in the reference form, scored as its own continuation."""
    from drift.data import parse_case
    from drift.evaluation.evaluate import EvalSpec, evaluate
    from tests.test_data import ORIGINAL

    long = parse_case(dict(ORIGINAL, case_id="long-gen", generation_prompts=["word " * 200]))
    monkeypatch.setattr(type(tiny), "sample", lambda *a, **k: pytest.fail("sampled past the context"))
    n = len(tiny.encode("word " * 200))
    assert n > tiny.cfg.n_ctx
    for form, more in (("reference", ""), ("short", " and 40 new tokens")):
        with pytest.raises(
            ValueError,
            match=rf"case\(s\) long-gen: a generation prompt of {n} tokens{more} exceeds the model's "
            rf"context of {tiny.cfg.n_ctx}",
        ):
            evaluate(tiny, [long], spec=EvalSpec(fluency=form), progress=False)


def test_a_bad_drift_threads_is_named_with_its_value(tiny_dir, tmp_path, monkeypatch, capsys):
    """47.18: ``DRIFT_THREADS=abc`` gave "invalid literal for int() with base 10: 'abc'"."""
    out = tmp_path / "x.json"
    for value in ("abc", "-2"):
        monkeypatch.setenv("DRIFT_THREADS", value)
        assert (
            cli(["eval", "--model", tiny_dir, "--limit", "1", "--no-fluency", "--quiet", "--out", str(out)])
            == 2
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [
            "error: DRIFT_THREADS must be a whole number of CPU threads >= 0 (0: torch's own setting), "
            f"got '{value}'"
        ]
        assert not out.exists()


BUILD = """
import sys, time
from pathlib import Path
from drift.util.store import building_dir
with building_dir(Path(sys.argv[1])) as tmp:
    (tmp / "model.safetensors").write_bytes(bytes(3_000_000))
    print("saving", flush=True)
    time.sleep(120)
"""


def test_a_conversion_killed_mid_save_is_reported_by_doctor_and_cleared_by_the_next(
    tmp_path, monkeypatch, capsys
):
    """47.18: a conversion killed mid-save left a hidden half-written folder (156 MB for the
    default model) that ``doctor`` did not report and nothing removed."""
    import os
    import subprocess
    import sys
    import time

    from drift.util.store import building_dir

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    final = tmp_path / "models" / "some-model-1.0"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = subprocess.Popen(
        [sys.executable, "-c", BUILD, str(final)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout.readline().strip() == "saving"
        (building,) = [p for p in final.parent.iterdir() if p.is_dir()]
        assert cli(["doctor"]) == 0  # a build in progress is no damage, and another build leaves it
        with building_dir(final) as tmp:
            (tmp / "w").write_text("x")
        assert building.is_dir() and "building" not in capsys.readouterr().out
    finally:
        child.kill()  # as kill -9 does: no clean-up runs
        child.wait()
    assert building.is_dir()
    assert cli(["doctor"]) == 1
    out = capsys.readouterr().out
    assert f"{building}: DAMAGED: a half-written folder left by a conversion that was killed (3.0 MB)" in out
    assert f"`rm -r {building}`" in out and "python -m drift doctor --fix" in out
    with building_dir(final) as tmp:  # the next build of it clears what the killed one left
        (tmp / "w").write_text("y")
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]
    older = final.parent / ".other-2.0.building-abc"  # left by a drift that kept no lock file
    older.mkdir()
    (older / "part").write_bytes(bytes(10))
    os.utime(older, (time.time() - 3600, time.time() - 3600))
    assert cli(["doctor", "--fix"]) == 0 and not older.exists()
    assert "(0.0 MB)" in capsys.readouterr().out


def test_batch_size_and_edit_batch_move_no_number_beyond_the_stated_tolerance(
    tiny_dir, tmp_path, monkeypatch
):
    """47.13: ``--batch-size`` and ``--edit-batch`` change numbers by float rounding (5th-6th digit
    on SmolLM2-135M) and are not in the run's identity, so a resume may mix them: the help and
    docs/reliability.md state the tolerance, :data:`drift.cli.options.BATCH_TOLERANCE`, which
    these two runs (one case and one sequence at a time, against 4 edits and 16 sequences
    together) must keep to, for every metric of every case."""
    import drift.editors.rome as rome
    from drift.cli.options import BATCH_TOLERANCE
    from drift.cli.spec import run_key

    together = []
    optimise_many = rome.optimise_many

    def spy(model, cases, *a, **k):
        together.append(len(cases))
        return optimise_many(model, cases, *a, **k)

    monkeypatch.setattr(rome, "optimise_many", spy)
    runs = {}
    for name, extra in (("alone", ("1", "1")), ("together", ("16", "4"))):
        out = tmp_path / f"{name}.json"
        args = ["eval", "--model", tiny_dir, "--editor", "rome", "--limit", "4", "--no-fluency", "--quiet"]
        assert main([*args, "--batch-size", extra[0], "--edit-batch", extra[1], "--out", str(out)]) == 0
        runs[name] = json.loads(out.read_text())
    assert together == [1, 1, 1, 1, 4]  # the second run did optimise its 4 cases in one batch
    assert run_key(runs["alone"]["config"]) == run_key(runs["together"]["config"])
    for a, b in zip(runs["alone"]["cases"], runs["together"]["cases"]):
        assert a["case_id"] == b["case_id"] and a["metrics"].keys() == b["metrics"].keys()
        for k, v in a["metrics"].items():
            assert b["metrics"][k] == pytest.approx(v, rel=BATCH_TOLERANCE, abs=1e-12), (a["case_id"], k)
