"""sweeps/*.toml: the grids of results/ as sweep files, and what lets `drift sweep` run them (a split
per run, eval's own log of a run resumed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drift.cli import jobs, sweep
from drift.cli import options as O
from drift.cli.runs import RecordLog
from drift.cli.spec import NOT_IN_KEY
from drift.data import DEV_SET as DEV

ROOT = Path(__file__).resolve().parents[1]
GRIDS = {
    "validation": "validation",
    "validation-memit": "validation-memit",
    "test": "test",
    "test-memit": "test-memit",
}
# recorded by today's eval, absent from results of the commits the committed grids are pinned to
LATER_KEYS = {"forms"}


def _committed(folder: Path) -> dict[str, Path]:
    """Each run of a results folder by name: its results file, else eval's log of it."""
    found: dict[str, Path] = {}
    for p in sorted(folder.glob("*.json.partial.jsonl")) + sorted(folder.glob("*.json")):
        found[p.name.removesuffix(".partial.jsonl").removesuffix(".json")] = p
    return found


def _config(path: Path) -> dict:
    """The configuration a results file or an eval log holds, as written (its split included)."""
    text = path.read_text(encoding="utf-8")
    return json.loads(text.splitlines()[0] if path.suffix == ".jsonl" else text)["config"]


@pytest.mark.skipif(not DEV.exists(), reason="../shared/data not beside the repo")
@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_each_sweep_file_is_its_committed_grid_run_for_run(grid, monkeypatch):
    """Every committed run is a run of the sweep file under its own name, with the committed
    configuration (the same key but for what the pinned commit did not record yet); a finished grid
    has no run left out of its file."""
    monkeypatch.chdir(ROOT)  # the file's data path is relative to the repository
    runs = {r.name: r for r in sweep.load(ROOT / "sweeps" / f"{grid}.toml")[0]}
    committed = _committed(ROOT / "results" / GRIDS[grid])
    assert committed and set(committed) <= set(runs)
    if all(p.suffix == ".json" for p in committed.values()) and grid != "validation-memit":
        assert set(committed) == set(runs)
    for name, path in committed.items():
        config = jobs.plan(O.Options.of(runs[name].namespace(ROOT / "out"), "eval")).config
        old = _config(path)
        drop = set(NOT_IN_KEY) | {"provenance"}
        now = {k: v for k, v in config.items() if k not in drop}
        then = {k: v for k, v in old.items() if k not in drop}
        assert {k: now.get(k) for k in then} == then, name
        assert set(now) - set(then) <= LATER_KEYS, name
        assert (config["limit"], config["shard"]) == (old["limit"], old["shard"]), name


def test_a_sweep_file_takes_a_split_per_run(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('data = "builtin"\nlimit = 4\nshard = "1/2"\n\n[[run]]\nname = "a"\neditor = "rome"\n')
    (run,), _ = sweep.load(path)
    assert run.namespace(tmp_path).shard == "1/2"
    path.write_text('data = "builtin"\nshard = "3/2"\n\n[[run]]\nname = "a"\neditor = "rome"\n')
    runs, _ = sweep.load(path)
    with pytest.raises(ValueError, match=r"sweep: run 'a': --shard 3/2"):  # before any model loads
        sweep.execute(runs, tmp_path, engine="local", progress=False)


@pytest.mark.integration
def test_a_sweep_resumes_evals_own_log_of_a_run(tmp_path, tiny_dir, monkeypatch):
    """A run started by `eval --out OUT/NAME.json` (its log OUT/NAME.json.partial.jsonl) and then
    swept into OUT keeps the cases the log holds and does only the others, on its split."""
    spec = tmp_path / "s.toml"
    spec.write_text(
        f'data = "builtin"\nlimit = 4\nshard = "1/2"\nno_fluency = true\nmodel = "{tiny_dir}"\n'
        'editor = "rome"\nsteps = 2\n\n[[run]]\nname = "a"\n'
    )
    runs, _ = sweep.load(spec)
    first = sweep.execute(runs, tmp_path, engine="local", chunk=1, progress=False)["a"]
    assert [c["case_id"] for c in first["cases"]] == ["0", "1"] and first["config"]["shard"] == "1/2"
    logged = dict(first["cases"][0], metrics=dict(first["cases"][0]["metrics"], ES=12345.0))
    with RecordLog(tmp_path / "a.json.partial.jsonl", first["config"]) as log:
        log.append(logged)  # eval's log of the run: case 0 finished (marked), case 1 not
    os.remove(tmp_path / "a.json")
    done: list[str] = []
    real = jobs.run
    monkeypatch.setattr(
        jobs,
        "run",
        lambda job, model, todo, *a, **k: (
            done.extend(c.case_id for c in todo) or real(job, model, todo, *a, **k)
        ),
    )
    again = sweep.execute(runs, tmp_path, engine="local", chunk=1, progress=False)["a"]
    assert done == ["1"]
    assert [c["metrics"]["ES"] for c in again["cases"]] == [12345.0, first["cases"][1]["metrics"]["ES"]]
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["cases"] == again["cases"]
