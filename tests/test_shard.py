"""Sharing long runs between processes: `eval --shard` + `merge`, `--part` of the analyses, `--hp`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drift.__main__ import main, parse_hp
from drift.cli.runs import RecordLog
from drift.util.runtime import share
from tests.conftest import run_analysis

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n", [1, 2, 3, 7, 12])
@pytest.mark.parametrize("contiguous", [True, False])
def test_shares_cover_every_item_once(n, contiguous):
    items = list(range(10))
    parts = [share(items, f"{i}/{n}", contiguous=contiguous) for i in range(1, n + 1)]
    assert sorted(x for p in parts for x in p) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("spec", ["0/3", "4/3", "2", "a/b", "1/0"])
def test_bad_share_is_named(spec):
    with pytest.raises(ValueError, match="--part"):
        share([1, 2], spec, option="--part")


def test_hp_values_are_literals():
    assert parse_hp(["n_prefixes=11", "early_stop=0", "block_attention_grad=True", "lr = 0.1"]) == {
        "n_prefixes": 11,
        "early_stop": 0,
        "block_attention_grad": True,
        "lr": 0.1,
    }
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_hp(["steps"])


def test_unknown_hp_is_named_before_the_model_loads(tmp_path, monkeypatch):
    import drift

    monkeypatch.setattr(drift, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(ValueError, match="no hyper-parameter 'n_prefix'.*n_prefixes"):
        main(["eval", "--editor", "rome", "--hp", "n_prefix=3", "--out", str(tmp_path / "x.json")])
    with pytest.raises(ValueError, match="--shard expects I/N"):
        main(["eval", "--shard", "x", "--out", str(tmp_path / "x.json")])


def _result(path: Path, config: dict, ids: list[int], es: float) -> Path:
    rows = [{"case_id": i, "subject": "s", "metrics": {"ES": es, "EM": es}} for i in ids]
    path.write_text(json.dumps({"config": config, "summary": {}, "cases": rows}))
    return path


def test_merge_joins_results_and_partial_files(tmp_path, capsys):
    cfg = {"editor": "rome", "data": "d.json"}
    a = _result(tmp_path / "a.json", cfg | {"shard": "1/3"}, [0, 1], 100.0)
    b = _result(tmp_path / "b.json", cfg | {"shard": "2/3"}, [2], 0.0)
    partial = tmp_path / "c.json.partial.jsonl"  # a shard stopped before it finished
    with RecordLog(partial, cfg | {"shard": "3/3"}) as log:
        log.append({"case_id": 3, "subject": "s", "metrics": {"ES": 0.0, "EM": 0.0}})
    with partial.open("a") as f:
        f.write('{"case_id": 4, "subj')  # cut by the interruption
    out = tmp_path / "all.json"
    assert main(["merge", str(a), str(b), str(partial), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["case_id"] for r in res["cases"]] == [0, 1, 2, 3]
    assert res["summary"]["ES"] == 50.0 and res["config"] == cfg
    # the inputs by their place beside the output, not the machine's absolute paths
    assert res["merged_from"] == ["a.json", "b.json", "c.json.partial.jsonl"]
    assert "4 cases" in capsys.readouterr().out


def test_merge_refuses_different_configurations(tmp_path):
    a = _result(tmp_path / "a.json", {"editor": "rome"}, [0], 100.0)
    b = _result(tmp_path / "b.json", {"editor": "memit"}, [1], 100.0)
    with pytest.raises(ValueError, match="different configuration"):
        main(["merge", str(a), str(b), "--out", str(tmp_path / "x.json")])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json is not a results JSON"):
        main(["merge", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x.json")])


@pytest.mark.slow
def test_sharded_eval_merges_to_the_whole(tmp_path, real):
    args = ["eval", "--data", "builtin", "--limit", "5", "--no-fluency", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "whole.json")]) == 0
    parts = []
    for i in (1, 2):
        parts.append(str(tmp_path / f"p{i}.json"))
        assert main(args + ["--shard", f"{i}/2", "--out", parts[-1]]) == 0
    assert len(json.loads(Path(parts[0]).read_text())["cases"]) == 2
    assert main(["merge", *parts, "--out", str(tmp_path / "merged.json")]) == 0
    whole = json.loads((tmp_path / "whole.json").read_text())
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert [r["case_id"] for r in merged["cases"]] == [r["case_id"] for r in whole["cases"]]
    for k, v in whole["summary"].items():  # the parts batch differently: float rounding only (in %)
        assert merged["summary"][k] == pytest.approx(v, abs=1e-3, nan_ok=True), k


@pytest.mark.integration
def test_sequential_parts_join_into_the_whole(tmp_path, tiny_dir, capsys):
    """Two `--part`s in their own folders, taken in with `--join`: the full run computes nothing."""
    base = [
        "--model",
        tiny_dir,
        "--data",
        "builtin",
        "--editors",
        "memit",
        "--edits",
        "2",
        "--checkpoints",
        "1,2",
        "--sweep-edits",
        "2",
        "--sweep-rates",
        "0.5",
        "--sim-edits",
        "2",
    ]
    logs = []
    for i in (1, 2):
        out = tmp_path / f"part{i}"
        stdout, _ = run_analysis("sequential", base + ["--part", f"{i}/2", "--out-dir", out], capsys)
        assert f"part {i}/2: done" in stdout and not list(out.glob("*.png"))
        logs.append((out / "sequential-runs.jsonl").read_text())
    assert sum(len(x.splitlines()) for x in logs) == 3  # MEMIT, MEMIT +DR, the sweep point: each once
    joined = tmp_path / "joined"
    _, stderr = run_analysis(
        "sequential", base + ["--out-dir", joined, "--join", tmp_path / "part1", tmp_path / "part2"], capsys
    )
    assert "sequential edits" not in stderr  # nothing computed again
    res = json.loads((joined / "sequential.json").read_text())
    assert set(res["curves"]) == {"MEMIT", "MEMIT +DR(p=0.8)"} and set(res["drop_rate_sweep"]) == {"0.5"}
    assert (joined / "attenuation_ES.png").stat().st_size > 1000


@pytest.mark.integration
def test_the_sadr_grid_runs_each_distinct_configuration_once_and_resumes(
    tmp_path, tiny_dir, capsys, monkeypatch
):
    """analyses/sadr.py: its grid is a sweep; a configuration asked twice runs once, every run is a
    results file `compare` reads, and a second call computes nothing."""
    base = [
        "--model",
        tiny_dir,
        "--limit",
        "2",
        "--sweep-limit",
        "1",
        "--figure-gammas",
        "1e-3",
        "--knob-steps",
        "2",
        "--knob-lr",
        "0.1",
        "--knob-kl",
        "1",
        "--sadr-steps",
        "2",
        "--chunk",
        "1",
        "--out",
        tmp_path,
    ]
    run_analysis("sadr", base, capsys)
    runs = sorted(p.name for p in (tmp_path / "runs").glob("*.json"))
    # None, ROME, ROME+SADR on 2 cases; γ=1e-3 selective and all heads, base, steps, lr, ω on 1
    assert len(runs) == 9 and not (tmp_path / "runs" / ".parts").exists()
    res = json.loads((tmp_path / "sadr.json").read_text())
    assert list(res["table3"]) == ["None", "ROME", "ROME+SADR (γ=0.01)"]  # the paper's γ for ROME
    assert (tmp_path / "fig6_selective_vs_all.png").stat().st_size > 1000
    import drift.cli.jobs

    monkeypatch.setattr(
        drift.cli.jobs, "run", lambda *a, **k: pytest.fail("a finished run was computed again")
    )
    run_analysis("sadr", base, capsys)
    assert json.loads((tmp_path / "sadr.json").read_text())["table3"] == res["table3"]
    assert main(["compare", str(tmp_path / "runs" / "none_n2.json"), str(tmp_path / "runs" / runs[0])]) == 0


def test_device_reaches_the_model_loader(tmp_path, monkeypatch):
    import drift

    class Loaded(Exception):
        pass

    def fake_load(name=None, *, device=None, **kw):
        raise Loaded(device)

    monkeypatch.setattr(drift, "load_model", fake_load)
    with pytest.raises(Loaded, match="cuda:1"):
        main(["eval", "--device", "cuda:1", "--limit", "1", "--out", str(tmp_path / "x.json")])
    with pytest.raises(Loaded, match="cuda:1"):
        main(
            [
                "eval",
                "--device",
                "cuda:1",
                "--editor",
                "memit",
                "--sequential",
                "--limit",
                "1",
                "--out",
                str(tmp_path / "x.json"),
            ]
        )
