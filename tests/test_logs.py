"""The one log (drift/cli/runs.py ``RecordLog``): committed logs read as they were written, a header
cut by a kill recovered or refused in one line, a trace's per-case files kept beside its log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from drift.__main__ import main
from drift.cli.runs import ChunkLogs, RecordLog, RunConflict, join, read_any, read_records
from drift.cli.spec import run_key

ROOT = Path(__file__).resolve().parent.parent
# the committed logs of unfinished runs, and the first lines of one that has since finished
# (results/seed/rome_sadr_g0.04_s20_p1.json.partial.jsonl: migrated, and as its run wrote it)
PARTIAL = sorted(ROOT.glob("results/**/*.json.partial.jsonl")) + sorted(ROOT.glob("tests/logs/*.jsonl"))
RUNS = sorted(ROOT.glob("results/**/sequential-runs.jsonl"))
ARGS = ["eval", "--data", "builtin", "--limit", "3", "--no-fluency", "--quiet"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_committed_logs_are_there():
    names = {p.relative_to(ROOT).as_posix() for p in PARTIAL}
    assert "tests/logs/rome_sadr_g0.04_s20_p1.json.partial.jsonl" in names and len(RUNS) >= 2


@pytest.mark.parametrize("committed", PARTIAL, ids=lambda p: p.parent.name + "/" + p.name)
def test_a_committed_partial_log_resumes_with_its_key_and_rows(committed, tmp_path):
    path = tmp_path / committed.name
    try:  # a snapshot: a run may still be appending to the committed log
        shutil.copyfile(committed, path)
    except FileNotFoundError:  # or have finished it since the suite started: its results file replaced it
        assert committed.with_name(committed.name.removesuffix(".partial.jsonl")).exists()
        pytest.skip(f"{committed.name} finished while the suite ran")
    snapshot = path.read_bytes()
    header, *rows = _lines(path)
    key = run_key(header["config"])  # its header's key, or that of an earlier drift (which keyed the path)
    assert header["drift_run"] == 1 and (
        key == header["key"] or committed.name.endswith("as-written.json.partial.jsonl")
    )
    with RecordLog(path, header["config"]) as log:  # the run that wrote it, resumed
        assert log.key == key and log.aside is None
        assert list(log.rows.values()) == rows and list(log.rows) == [str(r["case_id"]) for r in rows]
        assert log.config == header["config"]  # no provenance note: the same run resumes it
    assert path.read_bytes() == snapshot  # opened, nothing rewritten
    config, merged = read_any(path)  # what merge, compare and the tables read
    assert config == header["config"] and merged == rows
    assert run_key(join([path])[0]) == key
    with pytest.raises(RunConflict, match="another configuration.*--restart"):
        with RecordLog(path, header["config"] | {"seed": 99}):
            pass
    assert path.read_bytes() == snapshot


@pytest.mark.parametrize("committed", RUNS, ids=lambda p: p.parent.name)
def test_a_committed_sequential_runs_log_is_read_by_key(committed, tmp_path):
    path = tmp_path / committed.name
    shutil.copyfile(committed, path)  # a snapshot, as above
    snapshot = path.read_bytes()
    records = _lines(path)
    log = RecordLog(path)
    assert log.rows == {r["key"]: r for r in records} == read_records(path)
    assert all(run_key(r["config"]) == r["key"] for r in records)  # what --join takes in
    whole = RecordLog(tmp_path / "all" / committed.name)
    assert whole.take_in(path) == len(records) and whole.rows == log.rows
    assert path.read_bytes() == snapshot


def _cut_header(log: Path, keep: int) -> str:
    """Cut the log's header line to its first ``keep`` characters (the rows stay); the header."""
    header, *rows = log.read_text().splitlines()
    log.write_text("\n".join([header[:keep], *rows]) + "\n")
    return header


def test_a_header_cut_after_the_key_is_written_again_and_the_run_resumes(
    tiny_dir, tmp_path, monkeypatch, capsys
):
    from tests.test_runs import _interrupted

    out = tmp_path / "r.json"
    path = _interrupted(tiny_dir, out, monkeypatch)
    header, row = path.read_text().splitlines()
    path.write_text(header + "\n" + json.dumps(json.loads(row) | {"marker": "from the log"}) + "\n")
    _cut_header(path, 60)
    key = json.loads(header)["key"]
    with pytest.raises(ValueError, match=f"header line is damaged.*run the eval command.*again.*{key}") as e:
        main(["merge", str(path), "--out", str(tmp_path / "m.json")])
    assert "\n" not in str(e.value) and "merge its results file" in str(e.value)
    assert main(ARGS + ["--model", tiny_dir, "--out", str(out)]) == 0  # the eval that wrote it
    assert "damaged header line was written again" in capsys.readouterr().err
    res = json.loads(out.read_text())
    assert [r["case_id"] for r in res["cases"]] == ["0", "1", "2"] and res["key"] == key
    assert res["cases"][0]["marker"] == "from the log"  # the finished case was kept, not recomputed
    with RecordLog(path, res["config"]) as log:  # the repair itself: the header written whole again
        log.append({"case_id": "0", "metrics": {"ES": 1.0}})
    _cut_header(path, 60)
    with RecordLog(path, res["config"]) as log:
        assert list(log.rows) == ["0"]
    assert json.loads(path.read_text().splitlines()[0])["config"] == res["config"]
    assert read_any(path) == (res["config"], [{"case_id": "0", "metrics": {"ES": 1.0}}])


def test_a_header_cut_before_the_key_names_restart_in_eval_and_merge(tiny_dir, tmp_path, monkeypatch):
    """47.18: eval and merge each pointed to the other; both now name ``eval --restart``, which
    sets the log aside (its rows kept there) and runs the cases again."""
    from tests.test_runs import _interrupted

    out = tmp_path / "r.json"
    path = _interrupted(tiny_dir, out, monkeypatch)
    _cut_header(path, 20)
    before = path.read_text()
    eval_args = ARGS + ["--model", tiny_dir, "--out", str(out)]
    with pytest.raises(RunConflict, match=r"1 finished case\(s\) of no configuration.*damaged") as e:
        main(eval_args)
    assert "\n" not in str(e.value) and "--restart" in str(e.value) and "merge" not in str(e.value)
    with pytest.raises(ValueError, match="no configuration.*run again with --restart") as e:
        main(["merge", str(path), "--out", str(tmp_path / "m.json")])
    assert "\n" not in str(e.value)
    assert path.read_text() == before  # refused twice, nothing lost
    assert main(eval_args + ["--restart"]) == 0
    assert len(json.loads(out.read_text())["cases"]) == 3 and not path.exists()
    (aside,) = tmp_path.glob("r.json.partial.jsonl.aside-*")
    assert aside.read_text() == before  # the rows are kept where they were set aside


def test_a_trace_log_keeps_each_cases_file_and_restart_sets_both_aside(tmp_path):
    import torch

    config = {"editor": "rome", "kind": "trace"}
    path = tmp_path / f".partial-{run_key(config)}.jsonl"
    log = RecordLog(path, config).open()
    log.save("7", {"scores": torch.ones(2)})
    assert log.load("7")["scores"].tolist() == [1.0, 1.0] and log.load("8") is None
    again = RecordLog(path, config).open()
    assert again.load("7")["scores"].tolist() == [1.0, 1.0]
    assert _lines(path)[1] == {"case_id": "7", "file": again.rows["7"]["file"]}
    (file,) = tmp_path.glob(".partial-*/*.pt")
    file.write_bytes(file.read_bytes()[:10])  # damaged: the case runs again
    with pytest.warns(UserWarning, match="running case 7 again"):
        assert RecordLog(path, config).open().load("7") is None
    fresh = RecordLog(path, config, restart=True).open()
    assert fresh.rows == {} and fresh.load("7") is None
    kept = sorted(p.name.split(".aside-")[0] for p in tmp_path.glob("*.aside-*"))
    assert kept == [path.stem, path.name]  # the log and its files, set aside together


def test_a_trace_folder_of_an_earlier_drift_is_read(tmp_path):
    """Before the one log, ``trace`` kept ``.partial-KEY/config.json`` and the files, no log."""
    from drift.util.store import save_object

    config = {"editor": "rome", "kind": "trace"}
    key = run_key(config)
    folder = tmp_path / f".partial-{key}"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"drift_run": 1, "key": key, "config": config}))
    import hashlib

    save_object(folder / f"{hashlib.sha256(b'3').hexdigest()[:16]}.pt", {"x": 1})
    for _ in range(2):  # and again once its log exists
        log = RecordLog(tmp_path / f"{folder.name}.jsonl", config).open()
        assert log.load("3") == {"x": 1} and log.load("4") is None


def test_a_sweeps_chunk_logs_are_record_logs_in_one_folder(tmp_path):
    logs = ChunkLogs(tmp_path, "rome")
    config = {"editor": "rome"}
    for first, ids in ((0, ["0", "1"]), (2, ["2"])):
        with RecordLog(logs.path(first), config | {"chunk": f"{first:05d}"}) as log:
            for i in ids:
                log.append({"case_id": i, "metrics": {"ES": 1.0}})
    path, rows = logs.carry(config, [{"case_id": "9", "metrics": {"ES": 0.0}}])
    assert path.name == "earlier.jsonl" and [r["case_id"] for r in rows] == ["9"]
    merged, rows = join(logs.paths(), "sweep")
    assert merged == config and sorted(r["case_id"] for r in rows) == ["0", "1", "2", "9"]
