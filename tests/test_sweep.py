"""`python -m drift sweep`: runs from a TOML file, in chunks, on Ray or in this process.

A sweep's results must be the results of the same runs done by ``eval`` one by one, and a sweep
stopped at any point must finish, on its rerun, without losing or redoing a finished case."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drift.__main__ import main
from drift.cli import sweep
from drift.cli.runs import RunConflict

ROOT = Path(__file__).resolve().parents[1]


def _spec(tmp_path: Path, tiny_dir: str, runs: str, limit: int = 3) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(
        f'data = "builtin"\nlimit = {limit}\nno_fluency = true\nmodel = "{tiny_dir}"\nchunk = 2\n\n' + runs
    )
    return path


TWO_RUNS = '[[run]]\nname = "none"\n\n[[run]]\neditor = "rome"\nsteps = 3\n'


def test_grids_multiply_and_options_become_eval_options():
    runs = sweep.expand(
        {
            "data": "builtin",
            "no_fluency": True,
            "run": [
                {"editor": "rome", "sadr": [1e-3, 1e-2], "hp": {"kl_factor": [0.5, 1.0]}},
                {"name": "plain", "editor": "memit"},
            ],
        }
    )
    assert [r.name for r in runs] == [
        "rome-sadr=0.001-kl_factor=0.5",
        "rome-sadr=0.001-kl_factor=1.0",
        "rome-sadr=0.01-kl_factor=0.5",
        "rome-sadr=0.01-kl_factor=1.0",
        "plain",
    ]
    ns = runs[1].namespace("out")
    assert (ns.data, ns.no_fluency, ns.editor, ns.sadr, ns.hp) == (
        "builtin",
        True,
        "rome",
        0.001,
        [("kl_factor", 1.0)],
    )
    assert (ns.out, ns.quiet, ns.limit, ns.scoring) == (
        str(Path("out") / runs[1].name) + ".json",
        True,
        None,
        "mean",
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"run": [{"out": "x"}]}, r"\['out'\] are set by the sweep itself"),
        ({"run": [{"name": "a"}, {"name": "a"}]}, r"runs named \['a'\] more than once"),
        ({"run": {"editor": "rome"}}, r"\[\[run\]\]"),
        ({"run": [{"name": ".."}]}, r"would be a hidden or parent folder"),
        ({"run": [{"name": ".parts"}]}, r"would be a hidden or parent folder"),
    ],
)
def test_a_bad_sweep_file_is_named(spec, message):
    with pytest.raises(ValueError, match=message):
        sweep.expand(spec)


def test_hp_strings_are_parsed_as_on_the_command_line():
    (run,) = sweep.expand({"run": [{"editor": "memit", "hp": {"layers": "(3, 4)", "lr": 0.5}}]})
    assert run.namespace("out").hp == [("layers", (3, 4)), ("lr", 0.5)]


@pytest.mark.parametrize(
    "table, message",
    [
        ({"editor": "romee"}, r"run 'r': unknown editor 'romee'"),
        ({"edit_batch": 0}, r"run 'r': edit_batch must be at least 1"),
        ({"no_fluency": "yes"}, r"run 'r': no_fluency: expected true or false"),
        ({"dtype": "bf32"}, r"run 'r': dtype: invalid choice 'bf32'"),
        ({"data": "no/such.json"}, r"run 'r': data: no such file"),
        ({"colour": "red"}, r"run 'r': unknown option 'colour'"),
    ],
)
def test_a_bad_option_in_a_sweep_file_is_named(table, message):
    with pytest.raises(ValueError, match=message):
        sweep.RunSpec("r", table).namespace("out")


def test_a_bad_option_fails_before_any_run_starts(tmp_path, tiny_dir, monkeypatch):
    import drift

    monkeypatch.setattr(drift, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    spec = _spec(tmp_path, tiny_dir, TWO_RUNS + '\n[[run]]\neditor = "romee"\n')
    with pytest.raises(ValueError, match="run 'romee': unknown editor 'romee'"):
        main(["sweep", str(spec), "--out-dir", str(tmp_path / "out"), "--engine", "local"])
    (tmp_path / "bad.toml").write_text("limit = ")
    with pytest.raises(ValueError, match="bad.toml is not valid TOML"):
        main(["sweep", str(tmp_path / "bad.toml"), "--out-dir", str(tmp_path / "out")])


def _same_rows(a: dict, b: dict) -> None:
    assert a["config"] == b["config"] and a["label"] == b["label"]
    assert [r["case_id"] for r in a["cases"]] == [r["case_id"] for r in b["cases"]]
    for x, y in zip(a["cases"], b["cases"]):
        assert x["metrics"].keys() == y["metrics"].keys()
        for k, v in x["metrics"].items():  # chunks batch differently: float rounding only
            assert y["metrics"][k] == pytest.approx(v, abs=1e-5), (x["case_id"], k)


def _one_by_one(tmp_path: Path, tiny_dir: str) -> dict[str, dict]:
    base = ["eval", "--model", tiny_dir, "--data", "builtin", "--limit", "3", "--no-fluency", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "e-none.json")]) == 0
    assert main(base + ["--editor", "rome", "--steps", "3", "--out", str(tmp_path / "e-rome.json")]) == 0
    return {n: json.loads((tmp_path / f"e-{n}.json").read_text()) for n in ("none", "rome")}


def test_a_local_sweep_equals_eval_run_by_run_and_a_changed_run_is_refused(tmp_path, tiny_dir, capsys):
    spec = _spec(tmp_path, tiny_dir, TWO_RUNS)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out-dir", str(out), "--engine", "local", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| rome: rome 3 steps |" in table and "wrote 2 results files" in table
    expected = _one_by_one(tmp_path, tiny_dir)
    for name, run in (("none", "none"), ("rome", "rome")):
        _same_rows(json.loads((out / f"{run}.json").read_text()), expected[name])
    assert not (out / ".parts").exists()
    import drift.cli.jobs

    grown = spec.read_text().replace("limit = 3", "limit = 4")
    (tmp_path / "grown.toml").write_text(grown)
    real_run, seen = drift.cli.jobs.run, []

    def counting(job, model, cases, on_case, **kw):
        seen.extend(c.case_id for c in cases)
        return real_run(job, model, cases, on_case, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(drift.cli.jobs, "run", counting)
        main(["sweep", str(tmp_path / "grown.toml"), "--out-dir", str(out), "--engine", "local", "--quiet"])
    assert seen == ["3", "3"]  # a larger --limit reuses the finished cases: only the new one runs
    assert len(json.loads((out / "rome.json").read_text())["cases"]) == 4
    spec.write_text(grown.replace("steps = 3", "steps = 4"))
    with pytest.raises(RunConflict, match="holds another configuration than run 'rome'.*--restart"):
        main(["sweep", str(spec), "--out-dir", str(out), "--engine", "local"])


@pytest.mark.integration
def test_a_ray_sweep_equals_eval_run_by_run(tmp_path, tiny_dir, capsys):
    spec = _spec(tmp_path, tiny_dir, TWO_RUNS)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out-dir", str(out), "--workers", "2", "--quiet"]) == 0
    expected = _one_by_one(tmp_path, tiny_dir)
    for name in ("none", "rome"):
        _same_rows(json.loads((out / f"{name}.json").read_text()), expected[name])
    capsys.readouterr()
    assert main(["compare", str(out / "none.json"), str(out / "rome.json"), "--metrics", "ES,NS"]) == 0
    assert "| rome 3 steps |" in capsys.readouterr().out  # the label survived the sweep


def _rows_logged(out: Path) -> int:
    return sum(max(len(p.read_text().splitlines()) - 1, 0) for p in out.glob(".parts/*/*.jsonl"))


def _session(sid: int) -> list[tuple[int, str]]:
    """Live processes of a session: (pid, name)."""
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getsid(int(d)) == sid:
                    name = Path(f"/proc/{d}/cmdline").read_text().split("\0")[0]
                    if name:
                        found.append((int(d), name))
            except (OSError, ProcessLookupError):
                pass
    return found


@pytest.mark.integration
def test_a_killed_worker_is_retried_and_a_killed_sweep_resumes_without_redoing_cases(tmp_path, tiny_dir):
    spec = _spec(tmp_path, tiny_dir, '[[run]]\neditor = "rome"\nsteps = 25\n', limit=6)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "drift",
        "sweep",
        str(spec),
        "--out-dir",
        str(out),
        "--quiet",
        "--chunk",
        "2",
    ]
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, start_new_session=True, env=env, cwd=tmp_path)
    try:
        deadline = time.time() + 300
        while _rows_logged(out) < 1 and time.time() < deadline:
            time.sleep(0.2)
        workers = [pid for pid, name in _session(proc.pid) if name.startswith("ray::run_chunk")]
        assert workers, "no Ray worker found"
        os.kill(workers[0], signal.SIGKILL)  # a worker dies: Ray retries its chunk from the log
        while _rows_logged(out) < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)  # now the whole sweep dies
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    logs = sorted(out.glob(".parts/rome/*.jsonl"))
    marked = 0
    for log in logs:  # mark every finished row: a recomputed case would lose its mark
        lines = log.read_text().splitlines()
        rows = [json.loads(x) | {"marker": True} for x in lines[1:] if x.endswith("}")]
        marked += len(rows)
        log.write_text("\n".join([lines[0], *map(json.dumps, rows)]) + "\n")
    assert 1 <= marked < 6
    subprocess.run(cmd, check=True, env=env, cwd=tmp_path, timeout=600)
    res = json.loads((out / "rome.json").read_text())
    assert [r["case_id"] for r in res["cases"]] == [str(i) for i in range(6)]
    assert sum(bool(r.get("marker")) for r in res["cases"]) == marked
