"""Sequential editing: edits stack, checkpoints evaluate earlier edits, the weights come back."""

from __future__ import annotations

import pytest

from drift.data import parse_case
from drift.editors.fusion import drop_and_rescale
from drift.editors.rome import ROMEHParams, compute_rome
from drift.evaluation.sequential import sequential_edits
from tests.conftest import weights_hash
from tests.test_rome import CORPUS

CASES = [
    parse_case(
        {
            "case_id": i,
            "requested_rewrite": {
                "prompt": f"The {s} is located in",
                "subject": s,
                "target_new": new,
                "target_true": old,
            },
            "rewrite": {"prompts": [f"The {s} is located in"], "targets": [new]},
        }
    )
    for i, (s, old, new) in enumerate(
        [("Eiffel Tower", "Paris", "Rome"), ("Colosseum", "Rome", "Athens"), ("Louvre", "Paris", "Berlin")]
    )
]
HP = ROMEHParams(layer=1, steps=2, n_prefixes=2, stats_texts=CORPUS)


def test_edits_stack_and_are_all_removed_at_the_end(tiny):
    h0 = weights_hash(tiny)
    seen = []

    def compute(model, case):
        seen.append(weights_hash(model))  # each edit is computed on the model carrying the earlier ones
        return compute_rome(model, case, HP)

    rows = sequential_edits(
        tiny,
        CASES,
        compute,
        checkpoints=(1, 3),
        progress=False,
        fuse=lambda e: drop_and_rescale(e, 0.5, seed=0),
    )
    assert [r["n_edits"] for r in rows] == [1, 3]
    assert [len(r["cases"]) for r in rows] == [1, 3] and "ES" in rows[1]["summary"]
    assert seen[0] == h0 and len(set(seen)) == 3
    assert weights_hash(tiny) == h0


def test_interruption_mid_run_restores_the_weights(tiny):
    h0 = weights_hash(tiny)
    calls = {"n": 0}

    def compute(model, case):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return compute_rome(model, case, HP)

    with pytest.raises(KeyboardInterrupt):
        sequential_edits(tiny, CASES, compute, checkpoints=(1,), progress=False)
    assert weights_hash(tiny) == h0


def test_an_interrupted_run_resumes_from_its_state_file(tiny, tmp_path):
    h0 = weights_hash(tiny)
    full = sequential_edits(
        tiny, CASES, lambda m, c: compute_rome(m, c, HP), checkpoints=(1, 3), progress=False
    )
    state = tmp_path / "run.state"
    calls = []

    def interrupted(model, case):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(case.case_id)
        return compute_rome(model, case, HP)

    with pytest.raises(KeyboardInterrupt):
        sequential_edits(tiny, CASES, interrupted, checkpoints=(1, 3), progress=False, state=state)
    assert weights_hash(tiny) == h0 and state.exists()
    redone = []

    def counting(model, case):
        redone.append(case.case_id)
        return compute_rome(model, case, HP)

    resumed = sequential_edits(tiny, CASES, counting, checkpoints=(1, 3), progress=False, state=state)
    assert redone == [CASES[2].case_id]  # the two finished edits are not computed again
    assert [r["n_edits"] for r in resumed] == [1, 3]
    for a, b in zip(full, resumed, strict=True):
        assert a["summary"]["ES"] == b["summary"]["ES"]
        assert abs(a["cases"][-1]["metrics"]["EM"] - b["cases"][-1]["metrics"]["EM"]) < 1e-3
    assert weights_hash(tiny) == h0 and not state.exists()


def test_a_state_file_of_another_run_or_damaged_is_ignored(tiny, tmp_path):
    state = tmp_path / "run.state"
    state.write_bytes(b"not a state")
    seen = []
    sequential_edits(
        tiny,
        CASES[:2],
        lambda m, c: seen.append(c.case_id) or compute_rome(m, c, HP),
        checkpoints=(2,),
        progress=False,
        state=state,
    )
    assert seen == [CASES[0].case_id, CASES[1].case_id]


@pytest.mark.integration
def test_sequential_script_writes_its_figures_and_reuses_finished_runs(tmp_path, tiny_dir, capsys):
    """`analyses/sequential.py` end to end on a tiny model saved to a folder, then rerun:
    nothing is recomputed."""
    import json

    from tests.conftest import run_analysis

    out = tmp_path / "out"
    argv = [
        "--model",
        tiny_dir,
        "--data",
        "builtin",
        "--editors",
        "memit,adaple",
        "--edits",
        "3",
        "--checkpoints",
        "1,3",
        "--sweep-edits",
        "2",
        "--sweep-rates",
        "0.5,0.9",
        "--sim-edits",
        "3",
        "--out-dir",
        out,
    ]
    run_analysis("sequential", argv, capsys)
    res = json.loads((out / "sequential.json").read_text())
    assert set(res["curves"]) == {"MEMIT", "MEMIT +DR(p=0.8)", "ADAPLE", "ADAPLE +DR(p=0.8)"}
    assert (
        str(tmp_path) not in (out / "sequential.json").read_text() and res["config"]["provenance"]["commit"]
    )
    assert [c["n_edits"] for c in res["curves"]["ADAPLE"]] == [1, 3]
    assert set(res["drop_rate_sweep"]) == {"0.5", "0.9"}
    sim = res["similarity"]["MEMIT"]
    assert len(sim["as computed"]) == 3 and abs(sim["as computed"][0][0] - 1) < 1e-5
    for stem in ("attenuation_ES", "drop_rate_sweep", "update_similarity"):
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.html").exists()
    runs = (out / "sequential-runs.jsonl").read_text()
    assert len(runs.splitlines()) == 6 and not list(out.glob(".partial-*"))
    _, stderr = run_analysis("sequential", argv, capsys)
    assert (out / "sequential-runs.jsonl").read_text() == runs
    assert "sequential edits" not in stderr  # no run was computed again


def test_a_metric_missing_at_a_checkpoint_is_a_gap_not_an_error():
    """On the dev set the first case has no paraphrases, so PS is absent after one edit: the
    attenuation figure gets a gap there (None) and keeps the later points."""
    from tests.conftest import load_analysis

    script = load_analysis("sequential")
    checkpoints = [
        {"n_edits": 1, "summary": {"ES": 0.0}},
        {"n_edits": 10, "summary": {"ES": 70.0, "PS": 100.0}},
    ]
    assert script.series(checkpoints, "PS") == [None, 100.0]
    assert script.series(checkpoints, "ES") == [0.0, 70.0]


def test_retention_rescores_the_fixed_early_set_at_every_checkpoint(tiny):
    """``score=K``: each checkpoint evaluates the first K edits only, the same cases every time,
    so their scores are comparable across checkpoints (attenuation, not a growing set)."""
    h0 = weights_hash(tiny)
    rows = sequential_edits(
        tiny, CASES, lambda m, c: compute_rome(m, c, HP), checkpoints=(1, 2, 3), progress=False, score=1
    )
    assert [r["n_edits"] for r in rows] == [1, 2, 3]
    assert [[c["case_id"] for c in r["cases"]] for r in rows] == [["0"], ["0"], ["0"]]
    # the first edit's own score moves as later edits stack on it
    p_first = [r["cases"][0]["metrics"]["EM"] for r in rows]
    assert len(set(p_first)) > 1
    assert weights_hash(tiny) == h0
    with pytest.raises(ValueError, match="score must be at least 1"):
        sequential_edits(tiny, CASES, lambda m, c: compute_rome(m, c, HP), score=0, progress=False)


def test_key_overlap_is_the_gram_matrix_in_c_inverse_and_its_chance_level(tiny):
    import math

    import torch

    from drift.editors.stats import key_second_moment
    from drift.evaluation.sequential import key_overlap, overlap_matrix, subject_keys

    K = subject_keys(tiny, CASES, [1])[1]
    assert K.shape == (3, tiny.cfg.d_mlp)
    # the key an edit writes to: the subject's last token of the bare prompt
    ids = tiny.encode(CASES[0].prompt)
    last = tiny.subject_positions(CASES[0].prompt, CASES[0].subject)[-1]
    direct = tiny.record(torch.tensor([ids]), [("mlp_key", 1)])["mlp_key", 1][0, last]
    torch.testing.assert_close(K[0].float(), direct)
    found = key_overlap(tiny, CASES, [1], chance_texts=CORPUS)
    C = key_second_moment(tiny, [1])[1].double()
    C = C + 1e-6 * C.diagonal().mean() * torch.eye(C.shape[0], dtype=torch.float64)
    G = K @ torch.linalg.solve(C, K.T)
    cos = G / torch.sqrt(G.diagonal()[:, None] * G.diagonal()[None, :])
    torch.testing.assert_close(torch.tensor(found[1]["edits"]["gram"], dtype=torch.float64), G)
    off = cos[~torch.eye(3, dtype=torch.bool)].abs()
    assert found[1]["edits"]["mean_abs_cosine"] == pytest.approx(float(off.mean()))
    assert 0 <= found[1]["chance"]["mean_abs_cosine"] <= 1 and len(found[1]["chance"]["cosine"]) == 3
    assert found["gaussian"] == pytest.approx(math.sqrt(2 / (math.pi * tiny.cfg.d_mlp)))
    # the write ratio is what a rank-one update along C⁻¹kⱼ puts on key kᵢ, relative to its own
    m = overlap_matrix(K, key_second_moment(tiny, [1])[1])
    u = torch.linalg.solve(C, K[1])
    torch.testing.assert_close(m["write"][0, 1], ((K[0] @ u) / (K[1] @ u)).to(m["write"].dtype))


@pytest.mark.integration
def test_sequential_retention_runs_log_each_checkpoint_and_key_overlap_writes_its_json(
    tmp_path, tiny_dir, capsys
):
    import json

    from tests.conftest import run_analysis

    out = tmp_path / "out"
    argv = ["--model", tiny_dir, "--data", "builtin", "--editors", "memit", "--edits", "3", "--out", out]
    run_analysis(
        "sequential",
        argv + ["--checkpoints", "1,3", "--retention", "1", "--no-sweep", "--part", "1/2"],
        capsys,
    )
    logged = [json.loads(line) for line in (out / "sequential-checkpoints.jsonl").read_text().splitlines()]
    assert [r["n_edits"] for r in logged] == [1, 3] and all(len(r["cases"]) == 1 for r in logged)
    assert logged[0]["cases"][0]["case_id"] == logged[1]["cases"][0]["case_id"]  # the same early edit
    (rec,) = [json.loads(line) for line in (out / "sequential-runs.jsonl").read_text().splitlines()]
    assert rec["config"]["retention"] == 1 and rec["key"] == logged[0]["key"]
    assert [len(c["cases"]) for c in rec["checkpoints"]] == [1, 1] and "provenance" in rec["config"]
    stdout, _ = run_analysis("sequential", argv + ["--key-overlap"], capsys)
    saved = json.loads((out / "key-overlap.json").read_text())
    assert saved["config"]["cases"] == rec["config"]["cases"] and "mean abs" not in stdout
    for layer in saved["layers"].values():
        assert len(layer["edits"]["cosine"]) == 3 and 0 <= layer["chance"]["mean_abs_cosine"] <= 1


def _counted_runs(path, data, monkeypatch):
    """A :class:`Runs` over ``path`` reading ``data``, whose runs are counted, not computed."""
    from drift.cli.commands import sequential as command

    computed = []

    def compute(self, model, cases, cfg, key):
        computed.append(key)
        rec = {"key": key, "label": "x", "config": cfg, "checkpoints": []}
        self.log.append(rec)
        return rec

    monkeypatch.setattr(command.Runs, "compute", compute)
    runs = command.Runs(path, False)
    runs.data = None if data is None else str(data)
    return runs, computed


def test_an_edited_case_file_is_another_sequential_run_and_the_same_file_resumes(tiny, tmp_path, monkeypatch):
    """47.11: the case file's digest is in a sequential run's key: a changed target runs again,
    the unchanged file finds the finished run."""
    import json
    from importlib import resources

    from drift.cli.spec import digest_of
    from drift.data import load_cases

    data = tmp_path / "cases.json"
    data.write_text(resources.files("drift").joinpath("cases/builtin.json").read_text())
    log = tmp_path / "sequential-runs.jsonl"
    common = dict(dr=0.0, sadr=None, checkpoints=[2], batch=1, seed=0)
    runs, computed = _counted_runs(log, data, monkeypatch)
    first = runs.get(tiny, load_cases(data, limit=2), "memit", **common)
    assert first["config"]["data_sha256"] == digest_of(data) and len(computed) == 1
    runs, computed = _counted_runs(log, data, monkeypatch)  # the same file, rerun: resumed
    assert runs.get(tiny, load_cases(data, limit=2), "memit", **common)["key"] == first["key"]
    assert computed == []
    cases = json.loads(data.read_text())
    cases[1]["requested_rewrite"]["target_new"] = "Lisbon"  # one target edited, same case ids
    data.write_text(json.dumps(cases))
    runs, computed = _counted_runs(log, data, monkeypatch)
    again = runs.get(tiny, load_cases(data, limit=2), "memit", **common)
    assert computed == [again["key"]] and again["key"] != first["key"]
    assert again["config"]["cases"] == first["config"]["cases"]


def test_a_sequential_record_keyed_before_the_digest_matches_only_its_own_case_file(
    tiny, tmp_path, monkeypatch, capsys
):
    """A record written before the digest was in the key (its key without ``data_sha256``) is
    found when its provenance names the same case file's digest, or none; not for another."""
    import json

    from drift.cli.commands.sequential import config_of
    from drift.cli.spec import digest_of, run_key
    from drift.data import load_cases

    cases = load_cases("builtin", limit=2)
    common = dict(dr=0.0, sadr=None, checkpoints=[2], batch=1, seed=0)
    cfg = config_of(tiny, cases, "memit", steps=None, keep=0, sim_dr=0.8, retention=None, **common)
    for recorded, taken in ((digest_of("builtin"), True), (None, True), ("0123456789abcdef", False)):
        log = tmp_path / f"{recorded}.jsonl"
        old = {"key": run_key(cfg), "label": "MEMIT", "checkpoints": []}
        data = None if recorded is None else {"name": "builtin", "sha256": recorded}
        log.write_text(json.dumps(old | {"config": cfg | {"provenance": {"data": data}}}) + "\n")
        runs, computed = _counted_runs(log, "builtin", monkeypatch)
        got = runs.get(tiny, cases, "memit", **common)
        assert (got["key"] == old["key"] and computed == []) if taken else computed == [got["key"]]
        err = capsys.readouterr().err
        assert ("names no case file digest" in err) == (recorded is None)
        assert ("read another version of the case file" in err) == (not taken)


def _committed_records() -> list:
    """Every record of the committed ``results/sequential*/**/sequential-runs.jsonl``, each a
    ``pytest.param`` named by its folder and label."""
    import json
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "results"
    return [
        pytest.param(rec, id=f"{path.parent.relative_to(results)}:{rec['label']}")
        for path in sorted(results.glob("sequential*/**/sequential-runs.jsonl"))
        for rec in map(json.loads, path.read_text().splitlines())
    ]


@pytest.mark.parametrize("record", _committed_records())
def test_committed_sequential_runs_keep_their_key_and_are_found_with_their_case_file(
    record, tmp_path, monkeypatch
):
    """Each committed record of results/sequential and results/sequential-retention: its
    configuration rebuilt gives its key, and it is found again reading the case file it names
    (the dev set; a record naming none, with any), while an edited copy of that file runs again."""
    import json
    from types import SimpleNamespace

    import torch

    from drift.cli.spec import digest_of
    from drift.data import DEV_SET

    cfg = record["config"]
    named = (cfg["provenance"].get("data") or {}).get("sha256")
    if named is not None and not (DEV_SET.is_file() and digest_of(DEV_SET) == named):
        pytest.skip(f"the case file of digest {named} (the dev set) is not here")
    log = tmp_path / "sequential-runs.jsonl"
    log.write_text(json.dumps(record) + "\n")
    model = SimpleNamespace(name=cfg["model"], dtype=torch.float32)
    cases = [SimpleNamespace(case_id=c) for c in cfg["cases"]]
    kw = {k: cfg[k] for k in ("dr", "sadr", "checkpoints", "batch", "seed", "keep")}
    kw |= {"sim_dr": cfg["sim_dr"] or 0.8, "retention": cfg.get("retention"), "steps": cfg.get("steps")}
    runs, computed = _counted_runs(log, DEV_SET if named else "builtin", monkeypatch)
    assert runs.get(model, cases, cfg["editor"], **kw) is runs.done[record["key"]] and computed == []
    if named is not None:
        edited = json.loads(DEV_SET.read_text())
        edited[0]["requested_rewrite"]["target_new"] += " (edited)"
        (tmp_path / DEV_SET.name).write_text(json.dumps(edited))
        runs, computed = _counted_runs(log, tmp_path / DEV_SET.name, monkeypatch)
        assert runs.get(model, cases, cfg["editor"], **kw)["key"] == computed[0] != record["key"]


def test_a_state_saved_under_the_older_weight_name_puts_the_weight_back_once(tiny, tmp_path):
    """A state file of an earlier drift names the weight ``"mlp_out"``: the resumed run keeps it
    under its one name, ``W_out``, so the next resume puts it back once (two names for one weight
    would add its change twice)."""
    import torch

    from drift.editors.base import Edit, WeightDelta
    from drift.evaluation.sequential import load_state, save_state
    from drift.util.store import config_digest

    w0 = tiny.weight("W_out", 0).detach().clone()
    state = tmp_path / "state.pt"
    run_id = config_digest({"cases": [str(c.case_id) for c in CASES], "checkpoints": [3], "batch": 1})
    save_state(state, run_id, 1, [], {("mlp_out", 0): w0 + 1})
    seen = []

    def compute(model, case):
        seen.append(model.weight("W_out", 0).detach().clone())
        if len(seen) == 2:
            raise KeyboardInterrupt
        return Edit([WeightDelta("W_out", 0, torch.zeros_like(w0))])

    with pytest.raises(KeyboardInterrupt):
        sequential_edits(tiny, CASES, compute, checkpoints=(3,), progress=False, state=state)
    assert list(load_state(state, run_id)["weights"]) == [("W_out", 0)]
    seen.clear()
    sequential_edits(tiny, CASES, compute, checkpoints=(3,), progress=False, state=state)
    assert len(seen) == 1 and torch.allclose(seen[0], w0 + 1)  # put back once, not twice
    assert torch.equal(tiny.weight("W_out", 0), w0)


def test_dropout_write_is_the_noise_drop_and_rescale_puts_on_other_keys():
    import torch

    from drift.editors.base import Edit, WeightDelta
    from drift.editors.fusion import drop_and_rescale
    from drift.evaluation.sequential import dropout_write, overlap_matrix

    g = torch.Generator().manual_seed(0)
    K = torch.randn(3, 12, generator=g, dtype=torch.float64)
    A = torch.randn(12, 12, generator=g, dtype=torch.float64)
    C = A @ A.T / 12 + torch.eye(12, dtype=torch.float64)
    n = dropout_write(K, C, 0.8)
    # edit 1's update along C⁻¹k₁, writing r at its own key; dropped and rescaled under 4000 masks
    u = torch.linalg.solve(C + 1e-6 * C.diagonal().mean() * torch.eye(12, dtype=torch.float64), K[1])
    u = u / (K[1] @ u)
    r = torch.randn(5, generator=g, dtype=torch.float64)
    edit = Edit([WeightDelta("W_out", 0, torch.outer(u, r))])
    noise = torch.stack([K[0] @ drop_and_rescale(edit, 0.8, seed=s).deltas[0].delta for s in range(4000)])
    # unbiased: the mean write at k₀ is the write ratio's; its spread is what dropout_write says
    write = overlap_matrix(K, C)["write"][0, 1]
    assert float((noise.mean(0) - write * r).norm()) < 0.1 * float(n[0, 1] * r.norm())
    measured = (noise - write * r).square().sum(1).mean().sqrt() / r.norm()
    assert float(measured) == pytest.approx(float(n[0, 1]), rel=0.05)
    assert dropout_write(K, C, 0.0).abs().max() == 0
    with pytest.raises(ValueError, match="drop rate"):
        dropout_write(K, C, 1.0)
