"""SADR: zero at the vanilla step, selective vs all heads, gradient through attention, CLI."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from drift.data import Probe
from drift.editors.objectives import EditBatch, Step
from drift.editors.rome import ROMEHParams, compute_rome
from drift.editors.sadr import SADR
from tests.conftest import weights_hash
from tests.test_rome import CORPUS, EIFFEL


def _step(i, rows_by_layer, lookup):
    n = next(iter(rows_by_layer.values())).shape[0]
    batch = EditBatch(
        tokens=torch.zeros(n + 1, 4, dtype=torch.long),
        lookup=torch.tensor(lookup + [0]),
        query=torch.full((n + 1,), 3),
        n_rewrite=n,
        start_layer=0,
    )
    extras = {"batch": batch, **{("sadr", l): r for l, r in rows_by_layer.items()}}
    return Step(
        step=i,
        target_logp=torch.zeros(n),
        kl_logp=torch.zeros(1, 2),
        vanilla_kl_logp=torch.zeros(1, 2),
        deltas={},
        v0_norms={},
        extras=extras,
    )


def test_penalty_is_zero_at_the_vanilla_step_and_counts_only_over_attending_heads():
    vanilla = torch.tensor([[[0.5, 0.3, 0.2], [0.2, 0.6, 0.2]]])  # 1 prompt, 2 heads, 3 tokens; subject at 1
    drifted = torch.tensor([[[0.2, 0.7, 0.1], [0.3, 0.5, 0.2]]])  # head 0 now attends 0.7 > max vanilla 0.6
    sel, every = SADR(1.0, "selective"), SADR(1.0, "all")  # γ multiplies the KL itself
    for term in (sel, every):
        term._layers = (0,)
        assert float(term(_step(0, {0: vanilla}, [1]))) == 0.0
    kl = (vanilla * (vanilla.log() - drifted.log())).sum(-1)[0]  # per head
    assert float(sel(_step(1, {0: drifted}, [1]))) == pytest.approx(float(kl[0]), rel=1e-4)
    assert float(every(_step(1, {0: drifted}, [1]))) == pytest.approx(float(kl.sum()), rel=1e-4)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="heads must be 'selective' or 'all'"):
        SADR(1e-2, "some")
    with pytest.raises(ValueError, match="gamma must be"):
        SADR(-1.0)


def test_sadr_joins_the_objective_and_changes_nothing_in_the_model(tiny):
    h0 = weights_hash(tiny)
    hp = ROMEHParams(layer=0, steps=4, n_prefixes=2, stats_texts=CORPUS, extra_terms=(SADR(1.0, "all"),))
    edit = compute_rome(tiny, EIFFEL, hp)
    assert weights_hash(tiny) == h0
    losses = edit.info["losses"]
    assert losses[0]["sadr"] == 0.0 and any(l["sadr"] > 0 for l in losses[1:])


@pytest.mark.xdist_group("rome_eiffel")
def test_sadr_restrains_attention_drift_on_the_real_model(real, rome_eiffel):
    from drift.interp import tracing
    from drift.interp.attention_drift import measure

    p = tracing.distracting_prompt(real, EIFFEL_WITH_NEIGHBOUR)
    plain = rome_eiffel  # ROMEHParams(layer=4, steps=20) of the same rewrite
    # a strong γ (1000× the paper's 1e-2, which it pairs with 80 steps) so the restraint acts within 20 steps
    restrained = compute_rome(
        real, EIFFEL_WITH_NEIGHBOUR, ROMEHParams(layer=4, steps=20, extra_terms=(SADR(10.0),))
    )
    drift_plain = measure(real, plain, p, "Rome")
    drift_sadr = measure(real, restrained, p, "Rome")
    assert float(drift_sadr.subject_gain[5:].max(-1).values.sum()) < float(
        drift_plain.subject_gain[5:].max(-1).values.sum()
    )
    assert drift_sadr.p_edit < drift_plain.p_edit


# The shared ROME edit's case (``rome_eiffel``) with one neighbour, for the distracting prompt.
EIFFEL_WITH_NEIGHBOUR = dataclasses.replace(
    EIFFEL, neighborhood=(Probe("The Louvre is a famous landmark in the city of", "Paris"),)
)


@pytest.mark.integration
def test_sadr_script_writes_table3_and_resumes(tmp_path, tiny_dir, capsys):
    import json

    from tests.conftest import run_analysis

    argv = ["--model", tiny_dir, "--limit", "1", "--no-figures", "--sadr-steps", "2", "--out-dir", tmp_path]
    run_analysis("sadr", argv, capsys)
    table = json.loads((tmp_path / "sadr.json").read_text())["table3"]
    assert list(table) == ["None", "ROME", "ROME+SADR (γ=0.01)"]  # the paper's γ for ROME
    assert (tmp_path / "table3.png").stat().st_size > 1000
    assert len(list((tmp_path / "runs").glob("*.json"))) == 3  # one results file per row


def test_sadr_reports_each_layers_head_kl_and_which_heads_it_restrained(tiny):
    term, every = SADR(1.0), SADR(1.0, "all")
    for t in (term, every):
        compute_rome(
            tiny, EIFFEL, ROMEHParams(layer=0, steps=4, n_prefixes=2, stats_texts=CORPUS, extra_terms=(t,))
        )
    assert sorted(term.report) == list(range(tiny.cfg.n_layers))  # from the edit layer on
    for l, r in term.report.items():
        assert r["kl"].shape == r["restrained"].shape == (tiny.cfg.n_heads,)
        assert ((0 <= r["restrained"]) & (r["restrained"] <= 1)).all() and (r["kl"] >= -1e-6).all()
        assert (every.report[l]["restrained"] == 1).all()


@pytest.mark.integration
def test_sadr_mechanism_script_reports_terms_heads_and_drift(tmp_path, tiny_dir, tiny, capsys):
    import json

    from tests.conftest import run_analysis

    stdout, _ = run_analysis(
        "sadr_mechanism",
        ["--model", tiny_dir, "--limit", "1", "--attn-layers", "0,1", "--out-dir", tmp_path],
        capsys,
    )
    assert "layers with most restrained heads" in stdout
    s = json.loads((tmp_path / "sadr_mechanism.json").read_text())["summary"]
    assert set(s["mean_losses"]) == {"nll", "kl", "weight_decay", "sadr"}
    assert len(s["restrained"]) == tiny.cfg.n_layers and len(s["restrained"][0]) == tiny.cfg.n_heads
    for stem in ("sadr_losses", "sadr_restrained", "sadr_heads", "sadr_cases"):
        assert (tmp_path / f"{stem}.png").stat().st_size > 1000
    assert set(s["patching"]) == {"vanilla", "rome", "patched", "best_patched"}
    assert s["patching"]["best_patched"] >= s["patching"]["patched"]


@pytest.mark.integration
def test_sadr_mechanism_runs_on_the_cases_named_by_ids(tmp_path, tiny_dir, tiny, capsys):
    import json

    from drift.data import load_cases
    from tests.conftest import run_analysis

    second = [c for c in load_cases("builtin") if c.distracting][1].case_id
    argv = ["--model", tiny_dir, "--attn-layers", "0,1", "--out-dir", tmp_path]
    stdout, _ = run_analysis("sadr_mechanism", argv + ["--ids", second, "--control"], capsys)
    saved = json.loads((tmp_path / "sadr_mechanism.json").read_text())
    cases = saved["cases"]
    assert [c["case_id"] for c in cases] == [second] and saved["config"]["scoring"] == "mean"
    assert set(cases[0]["drift"]) == {"rome", "rome+sadr", "rome@sadr-steps"} and "rome@sadr-steps" in stdout
    # the unedited model's P(right answer): exp of the mean log-probability of its tokens (the
    # reference's scoring, the default), from one plain forward
    probe = next(c for c in load_cases("builtin") if c.case_id == second).distracting[0]
    ids, tgt = tiny.encode(probe.prompt), tiny.encode_target(probe.answer)
    logp = tiny.forward(torch.tensor([ids + tgt[:-1]]))[0].log_softmax(-1)[len(ids) - 1 :]
    assert len(tgt) > 1  # a multi-token answer on the tiny model, so mean and product differ
    p_right = float(torch.stack([logp[i, t] for i, t in enumerate(tgt)]).mean().exp())
    assert cases[0]["vanilla"]["p_true"] == pytest.approx(p_right, rel=1e-4)
    for row in cases[0]["drift"].values():  # window 0-1: the subject's share is its gain there
        to = row["extra_attention"]
        assert to["subject"] == pytest.approx(float(torch.tensor(row["subject_gain"])[0:2].sum()), abs=1e-5)
        assert sum(to.values()) == pytest.approx(0.0, abs=1e-4)  # attention moves, rows sum to 1
    with pytest.raises(ValueError, match="--ids: case.*nosuch"):
        run_analysis("sadr_mechanism", argv + ["--ids", "nosuch"], capsys)


def test_sadr_settings_are_checked_and_a_fresh_copy_keeps_them():
    assert SADR(gamma=0.0).gamma == 0.0  # γ 0: the term is there and restrains nothing
    with pytest.raises(ValueError, match=r"^SADR gamma must be ≥ 0, got -1.0$"):
        SADR(gamma=-1.0)
    with pytest.raises(ValueError, match=r"^SADR heads must be 'selective' or 'all', got 'some'$"):
        SADR(gamma=1.0, heads="some")
    term = SADR(gamma=0.04, heads="all")
    copy = term.fresh()
    assert copy is not term and (copy.gamma, copy.heads) == (0.04, "all")
