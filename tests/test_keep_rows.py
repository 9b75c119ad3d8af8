"""Finished rows are never lost to a later run on the same ``--out``: a smaller ``--limit``, another
shard, or a partial merge is refused (or, with ``--restart``, sets the file aside), and a log's
cases beyond the run's are kept for the run that wants them (issue 47, items 1-4)."""

from __future__ import annotations

import json

from drift.__main__ import cli, main


def _eval(tiny_dir, out, *extra) -> int:
    return cli(["eval", "--model", tiny_dir, "--no-fluency", "--quiet", "--out", str(out), *extra])


def _ids(path) -> list[str]:
    return [c["case_id"] for c in json.loads(path.read_text())["cases"]]


def test_a_smaller_limit_keeps_the_logged_cases_beyond_it(tiny_dir, tmp_path, monkeypatch, capsys):
    import drift.evaluation.evaluate as ev

    real, seen = ev.evaluate, []

    def three_then_ctrl_c(model, cases, *, on_case, **kw):
        real(model, cases[:3], on_case=on_case, **kw)
        raise KeyboardInterrupt

    out = tmp_path / "r.json"
    monkeypatch.setattr(ev, "evaluate", three_then_ctrl_c)
    assert _eval(tiny_dir, out, "--limit", "5") == 130
    monkeypatch.setattr(ev, "evaluate", real)
    assert _eval(tiny_dir, out, "--limit", "1") == 0
    assert _ids(out) == ["0"]
    log = tmp_path / "r.json.partial.jsonl"
    assert log.exists() and "keeps 2 finished case(s) beyond this run's cases" in capsys.readouterr().err

    def counting(model, cases, **kw):
        seen.extend(c.case_id for c in cases)
        return real(model, cases, **kw)

    monkeypatch.setattr(ev, "evaluate", counting)
    assert _eval(tiny_dir, out, "--limit", "5") == 0  # the larger run resumes: only 2 cases computed
    assert seen == ["3", "4"] and _ids(out) == ["0", "1", "2", "3", "4"] and not log.exists()


def test_another_shard_or_a_smaller_limit_does_not_overwrite_finished_results(tiny_dir, tmp_path, capsys):
    out = tmp_path / "sh.json"
    assert _eval(tiny_dir, out, "--limit", "4", "--shard", "1/2") == 0
    before = out.read_text()
    assert _eval(tiny_dir, out, "--limit", "4", "--shard", "2/2") == 2
    err = capsys.readouterr().err
    assert "cases this run does not write" in err and "merge" in err and out.read_text() == before
    assert _eval(tiny_dir, out, "--limit", "1") == 2 and out.read_text() == before
    assert _eval(tiny_dir, out, "--limit", "4", "--shard", "2/2", "--restart") == 0
    assert len(list(tmp_path.glob("sh.json.aside-*"))) == 1  # set aside, not deleted


def test_a_partial_merge_does_not_overwrite_the_whole_run(tiny_dir, tmp_path, capsys):
    full, part = tmp_path / "full.json", tmp_path / "part.json"
    assert _eval(tiny_dir, part, "--limit", "4", "--shard", "1/2") == 0
    assert _eval(tiny_dir, tmp_path / "two.json", "--limit", "4", "--shard", "2/2") == 0
    assert main(["merge", str(part), str(tmp_path / "two.json"), "--out", str(full)]) == 0
    before = full.read_text()
    assert cli(["merge", str(part), "--allow-missing", "--out", str(full)]) == 2
    assert "cases this run does not write" in capsys.readouterr().err and full.read_text() == before


def test_eval_sequential_interrupted_resumes_from_its_saved_edits(tiny_dir, tmp_path, monkeypatch, capsys):
    import drift.editors as editors

    real_get, computed = editors.get_compute, []

    def get_compute(*a, stop_at=None, **k):
        compute = real_get(*a, **k)

        def counted(model, case):
            if case.case_id == stop_at:
                raise KeyboardInterrupt
            computed.append(case.case_id)
            return compute(model, case)

        return counted

    out = tmp_path / "seq.json"
    args = ["--editor", "rome", "--sequential", "--checkpoints", "1,3", "--limit", "3", "--steps", "2"]
    monkeypatch.setattr(editors, "get_compute", lambda *a, **k: get_compute(*a, stop_at="2", **k))
    assert _eval(tiny_dir, out, *args) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the edits finished so far are saved in" in err and ".partial-" in err
    assert list(tmp_path.glob("seq.json.partial-*.pt"))
    monkeypatch.setattr(editors, "get_compute", get_compute)
    computed.clear()
    assert _eval(tiny_dir, out, *args) == 0
    assert computed == ["2"] and not list(tmp_path.glob("seq.json.partial-*"))
    assert [c["n_edits"] for c in json.loads(out.read_text())["checkpoints"]] == [1, 3]


def test_sequential_and_sweep_restart_set_aside_instead_of_deleting(tmp_path):
    from drift.cli.runs import RecordLog

    log = RecordLog(tmp_path / "sequential-runs.jsonl")
    log.append({"key": "k", "config": {}, "checkpoints": []})
    (tmp_path / ".partial-x").mkdir()
    RecordLog(tmp_path / "sequential-runs.jsonl", restart=True)
    assert len(list(tmp_path.glob("sequential-runs.jsonl.aside-*"))) == 1
    assert len(list(tmp_path.glob(".partial-x.aside-*"))) == 1


def test_a_sweep_whose_limit_shrank_keeps_its_finished_results(tmp_path, tiny_dir, capsys):
    spec, out = tmp_path / "spec.toml", tmp_path / "sw"
    head = f'data = "builtin"\nno_fluency = true\nmodel = "{tiny_dir}"\nchunk = 2\n'
    spec.write_text(head + 'limit = 3\n\n[[run]]\nname = "none"\n')
    assert cli(["sweep", str(spec), "--out-dir", str(out), "--engine", "local", "-q"]) == 0
    before = (out / "none.json").read_text()
    spec.write_text(head + 'limit = 2\n\n[[run]]\nname = "none"\n')
    assert cli(["sweep", str(spec), "--out-dir", str(out), "--engine", "local", "-q"]) == 2
    assert "1 finished case(s) this run does not cover" in capsys.readouterr().err
    assert (out / "none.json").read_text() == before
    assert cli(["sweep", str(spec), "--out-dir", str(out), "--engine", "local", "-q", "--restart"]) == 0
    assert len(list(out.glob("none.json.aside-*"))) == 1 and len(_ids(out / "none.json")) == 2


def test_steps_given_twice_is_refused_and_compare_warns_on_different_case_files(tmp_path, capsys):
    import pytest

    from drift.evaluation.compare import compare_table

    with pytest.raises(ValueError, match="--steps 4 and --hp steps=2 both set the editor's steps"):
        main(
            ["eval", "--editor", "rome", "--steps", "4", "--hp", "steps=2", "--out", str(tmp_path / "x.json")]
        )
    cases = [{"case_id": str(i), "metrics": {"ES": 100.0 * (i % 2)}} for i in range(4)]
    a = {"config": {"data_sha256": "aaaa"}, "cases": cases}
    b = {"config": {"data_sha256": "bbbb"}, "cases": cases}
    assert "read different case files" in compare_table([("a", a), ("b", b)], ["ES"])
    assert "different case files" not in compare_table([("a", a), ("a2", a)], ["ES"])


def test_merge_takes_the_lock_an_eval_on_the_same_out_holds(tiny_dir, tmp_path, capsys):
    from filelock import FileLock

    part, full = tmp_path / "part.json", tmp_path / "full.json"
    assert _eval(tiny_dir, part, "--limit", "2") == 0
    with FileLock(f"{full}.partial.jsonl.lock"):  # as an eval writing full.json holds it
        assert cli(["merge", str(part), "--out", str(full)]) == 2
    assert "is being written by another process" in capsys.readouterr().err and not full.exists()
    assert cli(["merge", str(part), "--out", str(full)]) == 0 and _ids(full) == ["0", "1"]


def test_a_sequential_run_in_half_precision_is_another_run(tiny, tmp_path, monkeypatch):
    import torch

    import drift.evaluation.sequential as seq
    from drift.cli.commands.sequential import Runs
    from drift.data import load_cases
    from drift.model.tiny import tiny_bridge

    monkeypatch.setattr(seq, "sequential_edits", lambda *a, **k: [])  # the key is what is asked here
    runs, cases = Runs(tmp_path / "sequential-runs.jsonl", False), load_cases("builtin", limit=2)
    common = dict(dr=0.0, sadr=None, checkpoints=[2], batch=1, seed=0)
    fp32 = runs.get(tiny, cases, "memit", **common)
    bf16 = runs.get(tiny_bridge(seed=0, dtype=torch.bfloat16), cases, "memit", **common)
    assert fp32["key"] != bf16["key"] and bf16["config"]["dtype"] == "bf16" and "dtype" not in fp32["config"]
