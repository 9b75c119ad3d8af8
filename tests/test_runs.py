"""The run layer (drift/cli/runs.py): logs that cannot lie, merges that keep their configuration.

Each test replays a defect found by probing the command line as a new user would; the eval runs go
through the real command on the tiny model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drift.__main__ import main
from drift.cli.runs import RecordLog, RunConflict, join
from drift.cli.spec import run_key, run_label
from drift.evaluation.metrics import summary_stats

ARGS = ["eval", "--data", "builtin", "--limit", "3", "--no-fluency", "--quiet"]


def _eval(tiny_dir, out: Path, *extra: str) -> dict:
    assert main(ARGS + ["--model", tiny_dir, "--out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def _interrupted(tiny_dir, out: Path, monkeypatch, *extra: str, after: int = 1) -> Path:
    """An eval stopped by Ctrl-C after ``after`` finished cases; its log."""
    import drift.evaluation.evaluate as ev

    real = ev._evaluate_group
    done: list[str] = []

    def stopping(model, cases, *a, **k):
        if len(done) >= after:
            raise KeyboardInterrupt
        done.extend(c.case_id for c in cases)
        return real(model, cases, *a, **k)

    monkeypatch.setattr(ev, "_evaluate_group", stopping)
    with pytest.raises(KeyboardInterrupt):
        main(ARGS + ["--model", tiny_dir, "--out", str(out), "--batch-size", "1", *extra])
    monkeypatch.setattr(ev, "_evaluate_group", real)
    return out.with_name(out.name + ".partial.jsonl")


def test_a_changed_configuration_refuses_an_interrupted_log_and_restart_sets_it_aside(
    tiny_dir, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "r.json"
    log = _interrupted(tiny_dir, out, monkeypatch)
    before = log.read_text()
    with pytest.raises(RunConflict, match=r"holds 1 finished case\(s\) of another configuration.*--restart"):
        main(ARGS + ["--model", tiny_dir, "--out", str(out), "--seed", "1"])
    assert log.read_text() == before  # nothing lost
    res = _eval(tiny_dir, out, "--seed", "1", "--restart")
    assert len(res["cases"]) == 3 and res["config"]["seed"] == 1
    aside = list(tmp_path.glob("r.json.partial.jsonl.aside-*"))
    assert len(aside) == 1 and aside[0].read_text() == before
    assert "the earlier log is kept as" in capsys.readouterr().err


def test_data_by_relative_or_absolute_path_is_one_configuration(tiny_dir, tmp_path, monkeypatch):
    from importlib import resources

    data = tmp_path / "cases.json"
    data.write_text(resources.files("drift").joinpath("cases/builtin.json").read_text())
    out = tmp_path / "r.json"
    monkeypatch.chdir(tmp_path)
    log = _interrupted(tiny_dir, out, monkeypatch, "--data", "cases.json")
    assert json.loads(log.read_text().splitlines()[0])["config"]["data"] == "cases.json"  # by name
    res = _eval(tiny_dir, out, "--data", str(data))  # resumes: same configuration
    assert len(res["cases"]) == 3


def test_a_log_of_an_earlier_drift_that_recorded_the_data_path_resumes(tiny_dir, tmp_path, monkeypatch):
    """Logs written before files were recorded by name keyed the absolute path: still this run."""
    from importlib import resources

    data = tmp_path / "cases.json"
    data.write_text(resources.files("drift").joinpath("cases/builtin.json").read_text())
    out = tmp_path / "r.json"
    log = _interrupted(tiny_dir, out, monkeypatch, "--data", str(data))
    header, *rows = log.read_text().splitlines()
    old = json.loads(header)
    old["config"]["data"] = str(data)  # as drift recorded it then, keyed with the path
    del old["config"]["provenance"]
    import hashlib

    kept = {k: v for k, v in old["config"].items() if k not in ("shard", "chunk", "limit")}
    old["key"] = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]
    log.write_text("\n".join([json.dumps(old), *rows]) + "\n")
    res = _eval(tiny_dir, out, "--data", str(data))
    assert len(res["cases"]) == 3 and res["config"]["data"] == "cases.json"
    assert res["config"]["provenance"]["started"] == "unknown"  # the log's first process said nothing


def test_a_results_file_carries_its_provenance_and_no_absolute_path(tiny_dir, tmp_path, monkeypatch):
    """eval's results say what ran them (drift's version and commit, device, dtype, edit batch,
    libraries, the key statistics' corpus, the data by name and digest), outside the run's key,
    and hold no path of the machine."""
    import importlib.metadata as md

    import torch

    import drift
    from drift.cli.spec import digest_of

    monkeypatch.setenv("DRIFT_SOURCE_COMMIT", "0123abc")  # only read outside a git checkout
    res = _eval(tiny_dir, tmp_path / "r.json", "--data", "builtin", "--edit-batch", "2")
    p = res["config"]["provenance"]
    assert p["drift"] == drift.__version__ and p["python"]
    assert p["torch"] == torch.__version__.split("+")[0] or p["torch"] == md.version("torch")
    assert p["transformers"] == md.version("transformers")
    assert p["transformer_lens"] == md.version("transformer-lens")
    assert p["device"] == "cpu" and p["dtype"] == "fp32" and p["edit_batch"] == 2
    assert p["stats_corpus"]["sequences"] == 200 and p["stats_corpus"]["tokens_each"] == 512
    assert p["data"] == {"name": "builtin", "sha256": digest_of("builtin")}
    root = Path(drift.__file__).resolve().parents[1]
    if (root / ".git").exists():  # a checkout: its commit, and whether drift/ differs from it
        import subprocess

        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert p["commit"] == head.stdout.strip() and isinstance(p["dirty"], bool)
    else:
        assert p["commit"] == "0123abc" and p["dirty"] is False
    # outside the key: the same run from another commit or machine resumes and rewrites it
    assert res["key"] == run_key({k: v for k, v in res["config"].items() if k != "provenance"})
    text = (tmp_path / "r.json").read_text()
    for where in (str(tmp_path), str(Path.home()), str(root)):
        assert where not in text, where
    other = tmp_path / "other.json"  # a case file outside the run's folder: recorded by name
    from importlib import resources

    other.write_text(resources.files("drift").joinpath("cases/builtin.json").read_text())
    res = _eval(tiny_dir, tmp_path / "r2.json", "--data", str(other))
    assert (
        res["config"]["data"] == "other.json" and res["config"]["provenance"]["data"]["name"] == "other.json"
    )
    assert str(tmp_path) not in (tmp_path / "r2.json").read_text()


def test_a_second_process_on_the_same_log_is_refused_while_the_first_writes(tmp_path):
    path = tmp_path / "r.json.partial.jsonl"
    with RecordLog(path, {"editor": "rome"}) as first:
        with pytest.raises(RunConflict, match="being written by another process"):
            with RecordLog(path, {"editor": "rome"}):
                pass
        with pytest.raises(RunConflict, match="being written by another process"):
            with RecordLog(path, {"editor": "memit"}, restart=True):
                pass
        first.append({"case_id": "0", "metrics": {"ES": 1.0}})
    with RecordLog(path, {"editor": "rome"}) as again:
        assert list(again.rows) == ["0"]


def test_a_line_cut_by_a_kill_is_dropped_and_the_resumed_run_completes(tiny_dir, tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    log = _interrupted(tiny_dir, out, monkeypatch)
    header, row = log.read_text().splitlines()
    kept = json.loads(row) | {"marker": "from the log"}
    log.write_text(header + "\n" + json.dumps(kept) + "\n" + '{"case_id": "1", "subj')  # SIGKILL mid-line
    res = _eval(tiny_dir, out)
    assert [r["case_id"] for r in res["cases"]] == ["0", "1", "2"]
    assert res["cases"][0]["marker"] == "from the log"  # the finished case was not recomputed
    assert not log.exists()


def _log(path: Path, config: dict, ids: list[str], es: float) -> Path:
    with RecordLog(path, config) as log:
        for i in ids:
            log.append({"case_id": i, "subject": "s", "metrics": {"ES": es, "EM": es}})
    return path


def _results(path: Path, config: dict, ids: list[str], es: float) -> Path:
    rows = [{"case_id": i, "subject": "s", "metrics": {"ES": es, "EM": es}} for i in ids]
    path.write_text(json.dumps({"config": config, "summary": {}, "cases": rows}))
    return path


def test_merge_refuses_partial_logs_of_different_configurations(tmp_path):
    rome = _log(tmp_path / "a.json.partial.jsonl", {"editor": "rome", "shard": "1/2"}, ["0"], 100.0)
    none = _log(tmp_path / "b.json.partial.jsonl", {"editor": "none", "shard": "2/2"}, ["1"], 0.0)
    with pytest.raises(RunConflict, match="different configuration.*editor: 'rome' here, 'none' asked"):
        main(["merge", str(rome), str(none), "--out", str(tmp_path / "x.json")])
    finished = _results(tmp_path / "c.json", {"editor": "rome"}, ["2"], 100.0)
    with pytest.raises(RunConflict, match="different configuration"):
        main(["merge", str(finished), str(none), "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def test_merged_partials_keep_their_configuration_and_label(tmp_path, capsys):
    cfg = {"editor": "rome", "sadr": 0.01, "steps": 80, "pool": "prompts"}
    a = _log(tmp_path / "a.json.partial.jsonl", cfg | {"shard": "1/2"}, ["0", "1"], 100.0)
    b = _log(tmp_path / "b.json.partial.jsonl", cfg | {"shard": "2/2"}, ["2"], 0.0)
    out = tmp_path / "all.json"
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["config"] == cfg and res["label"] == "rome+SADR(γ=0.01) 80 steps" == run_label(cfg)
    assert res["key"] == run_key(cfg) and [r["case_id"] for r in res["cases"]] == ["0", "1", "2"]
    assert main(["compare", str(out), str(a), "--metrics", "ES"]) == 0
    table = capsys.readouterr().out
    assert table.count("rome+SADR(γ=0.01) 80 steps") >= 2 and "| ? |" not in table


def test_a_log_without_a_configuration_is_named_not_merged(tmp_path):
    old = tmp_path / "c.json.partial.jsonl"
    old.write_text(json.dumps({"config_key": "k"}) + "\n" + json.dumps({"case_id": 3, "metrics": {}}) + "\n")
    with pytest.raises(ValueError, match="records no configuration.*header has none"):
        main(["merge", str(old), "--out", str(tmp_path / "x.json")])
    with pytest.raises(RunConflict, match="no configuration"):
        with RecordLog(old, {"editor": "rome"}):
            pass


def test_join_takes_each_case_once_and_drops_the_shard(tmp_path):
    a = _log(tmp_path / "a.jsonl", {"editor": "rome", "shard": "1/2"}, ["0", "1"], 100.0)
    b = _results(tmp_path / "b.json", {"editor": "rome", "shard": "2/2"}, ["1", "2"], 0.0)
    config, rows = join([a, b])
    assert config == {"editor": "rome"}
    assert [(r["case_id"], r["metrics"]["ES"]) for r in rows] == [("0", 100.0), ("1", 100.0), ("2", 0.0)]


def test_finish_names_unfinished_cases_instead_of_a_key_error(tmp_path):
    with RecordLog(tmp_path / "r.jsonl", {"editor": "rome"}) as log:
        log.append({"case_id": "0", "metrics": {"ES": 1.0}})
        with pytest.raises(RuntimeError, match=r"1 case\(s\) unfinished \(1\)"):
            log.finish(tmp_path / "r.json", ["0", "1"], "cases")


def test_the_typed_summary_reads_a_results_summary(tiny_dir, tmp_path):
    res = _eval(tiny_dir, tmp_path / "r.json")
    s = summary_stats(res["summary"])
    assert s["ES"].n == 3 and s["ES"].k == 3 and s["ES"].mean == res["summary"]["ES"]
    assert s["ES"].ci[0] <= s["ES"].mean <= s["ES"].ci[1]


def test_slurm_array_tasks_take_their_shard(tiny_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    res = _eval(tiny_dir, tmp_path / "r.json")
    assert res["config"]["shard"] == "2/3" and [r["case_id"] for r in res["cases"]] == ["1"]
    assert "--shard 2/3 from the SLURM job array" in capsys.readouterr().err
    res = _eval(tiny_dir, tmp_path / "all.json", "--shard", "1/1")  # an explicit --shard wins
    assert len(res["cases"]) == 3


@pytest.mark.parametrize(
    "env, message",
    [
        ({"ID": "4", "MIN": "0", "COUNT": "4", "STEP": "2"}, None),
        ({"ID": "3", "MIN": "0", "COUNT": "4", "STEP": "2"}, "is not one of 4 tasks"),
        ({"ID": "7", "COUNT": "4"}, "is not one of 4 tasks"),
        ({"ID": "x", "COUNT": "4"}, "must be whole numbers"),
    ],
)
def test_slurm_arrays_with_steps_and_bad_values(env, message, monkeypatch):
    from drift.cli.jobs import slurm_shard

    for k, v in env.items():
        monkeypatch.setenv(f"SLURM_ARRAY_TASK_{k}", v)
    if message is None:
        assert slurm_shard() == "3/4"
    else:
        with pytest.raises(ValueError, match=message):
            slurm_shard()


def test_a_relative_data_path_merges_with_the_same_absolute_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cf.json").write_text("[]")
    old = _results(tmp_path / "p1.json", {"editor": "rome", "data": "cf.json"}, ["0"], 100.0)
    new = _results(tmp_path / "p2.json", {"editor": "rome", "data": str(tmp_path / "cf.json")}, ["1"], 0.0)
    config, rows = join([old, new])
    assert config["data"] == "cf.json" and len(rows) == 2


def test_results_are_written_with_the_umask(tiny_dir, tmp_path):
    old = os.umask(0o027)
    try:
        _eval(tiny_dir, tmp_path / "r.json")
    finally:
        os.umask(old)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o640


def test_set_aside_moves_files_and_folders_and_never_over_an_earlier_one(tmp_path):
    from drift.cli.runs import set_aside

    first = tmp_path / "r.json"
    first.write_text("1")
    a = set_aside(first)
    first.write_text("2")
    b = set_aside(first)
    assert not first.exists() and a != b and {a.read_text(), b.read_text()} == {"1", "2"}
    assert a.name.startswith("r.json.aside-") and b.name.startswith("r.json.aside-")
    folder = tmp_path / ".parts"
    (folder / "run").mkdir(parents=True)
    assert (set_aside(folder) / "run").is_dir() and not folder.exists()


def test_a_record_appended_after_a_line_cut_by_a_kill_is_kept(tmp_path):
    from drift.cli.runs import append_record, read_records

    log = tmp_path / "runs.jsonl"
    append_record(log, {"key": "a"})
    with log.open("a") as f:
        f.write('{"key": "b", "summ')  # the process died mid-write
    append_record(log, {"key": "c"})
    assert set(read_records(log)) == {"a", "c"}


def test_a_record_log_takes_in_a_parts_runs_and_restart_clears_its_work(tmp_path):
    from drift.cli.runs import RecordLog

    config = {"editor": "memit", "dr": 0.8}
    part = RecordLog(tmp_path / "p1" / "sequential-runs.jsonl")
    part.append({"key": run_key(config), "config": config})
    part.append({"key": "0123456789abcdef", "config": config})  # not its configuration's key: left out
    whole = RecordLog(tmp_path / "all" / "sequential-runs.jsonl")
    assert whole.take_in(part.path) == 2 and list(whole.rows) == [run_key(config)]
    assert list(RecordLog(whole.path).rows) == [run_key(config)]
    whole.work("0123456789abcdef").mkdir()
    again = RecordLog(whole.path, restart=True)
    assert again.rows == {} and not whole.path.exists()
    kept = sorted(p.name.split(".aside-")[0] for p in whole.path.parent.iterdir())
    assert kept == [".partial-0123456789abcdef", "sequential-runs.jsonl"]  # set aside, not deleted


def test_the_sequential_state_file_keeps_its_layout_and_a_damaged_one_is_ignored(tmp_path):
    import torch

    from drift.evaluation.sequential import load_state, save_state
    from drift.util.store import load_object

    path = tmp_path / ".partial-k" / "state.pt"
    save_state(path, "run", 3, [{"n_edits": 1}], {("mlp_out", 1): torch.ones(2)})
    saved = load_object(path)
    assert saved["run_id"] == "run" and saved["n_done"] == 3 and saved["rows"] == [{"n_edits": 1}]
    assert list(saved) == ["run_id", "n_done", "rows", "weights"] and load_state(path, "run") is not None
    path.write_bytes(path.read_bytes()[:20])  # cut by a kill of an older writer
    assert load_state(path, "run") is None and load_state(None, "run") is None


# ---- the run spec: committed runs keep their keys ------------------------------------------------
RESULTS = Path(__file__).resolve().parents[1] / "results"


def _committed_headers() -> list[tuple[str, dict]]:
    """``(where, {"key", "config", ...})`` of every committed results file, run record and log
    header under results/ that names a key."""
    found = []
    for path in sorted(RESULTS.rglob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "key" in data and "config" in data:
            found.append((str(path.relative_to(RESULTS)), data))
    for path in sorted(RESULTS.rglob("*.jsonl")):
        for i, line in enumerate(path.read_text().splitlines()):
            rec = json.loads(line) if line.startswith("{") else None
            if isinstance(rec, dict) and "key" in rec and isinstance(rec.get("config"), dict):
                found.append((f"{path.relative_to(RESULTS)}:{i + 1}", rec))
    return found


def test_every_committed_runs_key_and_label_recompute_from_its_configuration():
    headers = _committed_headers()
    assert len(headers) >= 40  # results/test, validation, seed, sequential …
    for where, rec in headers:
        assert run_key(rec["config"]) == rec["key"], where
        if "label" in rec and "sequential" not in where:  # sequential records name their own label
            assert run_label(rec["config"]) == rec["label"], where


def _options_of(config: dict):
    """The options of ``eval`` that made a committed run (the dev set by its path)."""
    import ast

    from drift.cli.options import DataOptions, EditorOptions, Options, RunOptions, ScoringOptions
    from drift.data import DEV_SET

    hp = {k: ast.literal_eval(v) for k, v in (config.get("hp") or {}).items()}
    editor = EditorOptions(
        config["editor"], config.get("dr"), config.get("sadr"), config.get("sadr_heads", "selective"),
        config.get("steps"), hp,
    )  # fmt: skip
    forms = config["forms"]
    scoring = ScoringOptions(
        config["scoring"], config["pool"], forms["fluency"], None, forms["ppl"], forms["res"]
    )
    data = DataOptions(str(DEV_SET), config["limit"], config.get("shard"))
    return Options(data=data, editor=editor, scoring=scoring, run=RunOptions(seed=config["seed"]))


@pytest.mark.parametrize(
    "where",
    [
        "test/memit_sadr_g0.04_s20.json",
        "test/pmet_sadr_g0.08_s40.json",
        "test/memit.json",
        "seed/rome_s20_p1.json",
        "seed/rome_sadr_g0.04_s20_p1.json",
        "validation-memit/memit_s20.json",
        "validation-memit/memit_sadr_g0.005_s20.json",
    ],
)
def test_the_spec_of_a_committed_runs_options_rebuilds_its_configuration_and_key(where, monkeypatch):
    """The spec built from the options that made a committed run gives its configuration entry for
    entry, in order, so the run resumes and its results file is written as before."""
    import drift.cli.spec as spec_module
    from drift.cli.spec import Spec

    path = RESULTS / where
    rec = json.loads(path.read_text().splitlines()[0] if where.endswith(".jsonl") else path.read_text())
    committed = {k: v for k, v in rec["config"].items() if k != "provenance"}
    # the dev set is not in this checkout: its digest as the run recorded it
    monkeypatch.setattr(spec_module, "digest_of", lambda source: committed["data_sha256"])
    spec = Spec.of(_options_of(committed))
    built = {k: v for k, v in spec.config.items() if k != "provenance"}
    assert json.dumps(built) == json.dumps(committed)
    assert spec.key == rec["key"] == run_key(rec["config"])
    assert spec.label == run_label(rec["config"]) and (spec.label == rec["label"] if "label" in rec else True)
    assert spec.evaluation.fluency is False and spec.evaluation.scoring == committed["scoring"]


def test_the_spec_is_frozen_and_its_key_follows_every_setting(tiny_dir):
    import dataclasses

    from drift.cli.options import EditorOptions, ModelOptions, Options, ScoringOptions
    from drift.cli.spec import Spec

    base = Options(model=ModelOptions(tiny_dir), editor=EditorOptions("rome"))
    spec = Spec.of(base)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.evaluation.fluency = False
    spec.config["seed"] = 99  # a copy: the spec is not changed through it
    assert spec.config["seed"] == 0 and spec.key == run_key(spec.config)
    changed = [
        dataclasses.replace(base, editor=EditorOptions("rome", steps=5)),
        dataclasses.replace(base, editor=EditorOptions("rome", sadr=0.01)),
        dataclasses.replace(base, scoring=ScoringOptions(fluency="short")),
        dataclasses.replace(base, scoring=ScoringOptions(res="accuracy")),
        dataclasses.replace(base, model=ModelOptions(tiny_dir, dtype="bf16")),
    ]
    keys = {Spec.of(o).key for o in changed} | {spec.key}
    assert len(keys) == len(changed) + 1
    assert repr(spec).startswith(f"Spec(eval 'rome' key={spec.key}, model=")
    assert repr(spec).endswith(", evaluation=EvalSpec())")  # the defaults are not shown
    assert "evaluation=EvalSpec(fluency='short')" in repr(Spec.of(changed[2]))
