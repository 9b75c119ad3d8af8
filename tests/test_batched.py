"""Batched editing: many cases' target vectors optimised in one forward/backward per step give
each case what optimising it alone gives (δ within 1e-5 relative in float32), for every editor
with and without SADR, also when a case stops early in the middle of the batch."""

from __future__ import annotations

import pytest
import torch

from drift.data import load_cases
from drift.editors import get_compute
from drift.editors.objectives import default_terms
from drift.editors.sadr import SADR
from drift.editors.target import optimise_many, optimise_targets
from tests.conftest import RecordingTerm
from tests.test_rome import CORPUS

CASES = load_cases("builtin")[:3]
SETTINGS = {
    "rome": dict(layer=0),
    "rome-awd": dict(layer=0),
    "memit": dict(layers=(0,)),
    "pmet": dict(layers=(0,)),
    "adaple": dict(layers=(0,)),
}
# The vectors sit below the tiny model's last layer: a vector after the last layer reaches no
# target token, its gradient is float noise, which Adam's first step scales up to ±lr.


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    return float((a - b).norm()) <= rel * max(float(b.norm()), 1e-12)


def _first_stop(model, sites, steps, **kw) -> float:
    """An early-stop threshold at which the cases alone stop after different numbers of passes,
    at least one before the last pass: read off their loss traces without any stop."""
    traces = [
        [sum(v for k, v in l.items() if k != "p_target") for l in r.losses]
        for r in (optimise_targets(model, c, sites, _terms(), steps=steps, early_stop=0, **kw) for c in CASES)
    ]
    for cut in sorted({v for t in traces for v in t}, reverse=True):
        stops = [next((i for i, v in enumerate(t) if v < cut), steps) for t in traces]
        if len(set(stops)) > 1 and min(stops) < steps - 2:
            return cut
    pytest.fail(f"no threshold separates the cases' stops: {traces}")


def _terms(sadr: bool = False):
    return default_terms(0.0625, 0.5) + ([SADR(gamma=5.0)] if sadr else [])


@pytest.mark.parametrize("sadr", [False, True])
@pytest.mark.parametrize(
    "sites,options",
    [
        ([("mlp_out", 0)], dict(key_layers=[0])),
        ([("mlp_out", 0)], dict(key_layers=[0], block_attention_grad=True)),
        ([("resid_post", 0)], {}),
        ([("attn_out", 0), ("mlp_out", 0)], dict(pmet_schedule=True, clamp_norm=0.5)),
    ],
    ids=["rome", "rome-awd", "memit", "pmet"],
)
def test_batched_vectors_equal_one_at_a_time_with_a_case_stopping_mid_batch(tiny, sites, options, sadr):
    steps, prefixes = 8, ["", "So. ", "Yesterday, in the news: "]
    kw = dict(prefixes=prefixes, lr=0.5, **options)
    cut = _first_stop(tiny, sites, steps, **kw)
    alone = [optimise_targets(tiny, c, sites, _terms(sadr), steps=steps, early_stop=cut, **kw) for c in CASES]
    together = optimise_many(tiny, CASES, sites, _terms(sadr), steps=steps, early_stop=cut, **kw)
    assert len({len(r.losses) for r in alone}) > 1  # the cases stop at different passes
    for a, b in zip(alone, together):
        assert len(b.losses) == len(a.losses)  # a stopped case stops updating, as alone
        for site in sites:
            assert _close(b.deltas[site], a.deltas[site]), site
            assert _close(b.v0[site], a.v0[site])
        for layer, k in a.keys.items():
            assert _close(b.keys[layer], k)
        for la, lb in zip(a.losses, b.losses):
            assert la.keys() == lb.keys()
            assert all(abs(la[k] - lb[k]) <= 1e-5 * max(1.0, abs(la[k])) for k in la)
        assert torch.equal(b.batch.tokens, a.batch.tokens)  # each case's own rows, as alone
    if sadr:  # each case had its own SADR term, which saw drift after step 0
        assert [t.name for t in together[0].terms][-1] == "sadr"
        assert together[0].terms[-1] is not together[1].terms[-1]
        assert any(l["sadr"] > 0 for r in together for l in r.losses)


def test_batched_path_without_the_prefix_cache_matches_too(tiny):
    kw = dict(prefixes=["", "So. "], steps=4, early_stop=0, key_layers=[0], prefix_cache=False)
    alone = [optimise_targets(tiny, c, [("mlp_out", 0)], _terms(True), **kw) for c in CASES]
    together = optimise_many(tiny, CASES, [("mlp_out", 0)], _terms(True), **kw)
    for a, b in zip(alone, together):
        assert _close(b.deltas[("mlp_out", 0)], a.deltas[("mlp_out", 0)])


def test_batched_path_without_the_prefix_cache_lets_a_stopped_case_leave(tiny):
    """A case that stops leaves the batch: the rows are re-laid without a held prefix."""
    kw = dict(prefixes=["", "So. "], key_layers=[0], prefix_cache=False)
    cut = _first_stop(tiny, [("mlp_out", 0)], 6, **kw)
    alone = [
        optimise_targets(tiny, c, [("mlp_out", 0)], _terms(), steps=6, early_stop=cut, **kw) for c in CASES
    ]
    together = optimise_many(tiny, CASES, [("mlp_out", 0)], _terms(), steps=6, early_stop=cut, **kw)
    assert len({len(r.losses) for r in alone}) > 1
    for a, b in zip(alone, together):
        assert len(b.losses) == len(a.losses)
        assert _close(b.deltas[("mlp_out", 0)], a.deltas[("mlp_out", 0)])


@pytest.mark.parametrize("name", sorted(SETTINGS))
@pytest.mark.parametrize("sadr", [False, True])
def test_every_editors_batched_edits_equal_its_edits_one_at_a_time(tiny, name, sadr):
    extra = dict(extra_terms=(SADR(gamma=5.0),)) if sadr else {}
    compute = get_compute(name, steps=4, n_prefixes=2, stats_texts=CORPUS, **SETTINGS[name], **extra)
    alone = [compute(tiny, c) for c in CASES]
    together = compute.many(tiny, CASES)
    for a, b in zip(alone, together):
        assert [(d.which, d.layer) for d in b.deltas] == [(d.which, d.layer) for d in a.deltas]
        for da, db in zip(a.deltas, b.deltas):
            assert _close(db.delta, da.delta, 1e-4), (name, da.which, da.layer)
        assert b.info["batch"] == len(CASES) and "batch" not in a.info


def test_a_diverging_case_is_named_and_nothing_is_returned(tiny):
    from drift.editors.objectives import LossTerm
    from drift.editors.target import EditDiverged

    class NaNOnSecond(LossTerm):
        name = "nan"

        def __call__(self, step):
            bad = step.extras["batch"].rows[0] > 0  # the second case's rows come later
            return torch.tensor(float("nan") if bad else 0.0)

    with pytest.raises(EditDiverged, match=f"case {CASES[1].case_id}"):
        optimise_many(tiny, CASES[:2], [("mlp_out", 0)], _terms() + [NaNOnSecond()], steps=2)


def test_evaluate_with_batched_edits_gives_the_one_at_a_time_rows_in_the_cases_order(tiny):
    from drift.editors import get_editor
    from drift.evaluation.evaluate import evaluate
    from drift.evaluation.spec import EvalSpec
    from tests.conftest import weights_hash

    cases = load_cases("builtin")[:5]
    editor = get_editor("rome", steps=4, n_prefixes=2, stats_texts=CORPUS, layer=0)
    h0 = weights_hash(tiny)
    seen = []
    alone = evaluate(tiny, cases, editor, EvalSpec(fluency=False, edit_batch=1))
    together = evaluate(tiny, cases, editor, EvalSpec(fluency=False, edit_batch=3), on_case=seen.append)
    assert weights_hash(tiny) == h0  # every edit removed
    assert [r["case_id"] for r in together] == [c.case_id for c in cases]
    assert sorted(r["case_id"] for r in seen) == sorted(c.case_id for c in cases)
    for a, b in zip(alone, together):
        assert a["metrics"].keys() == b["metrics"].keys()
        for k, v in a["metrics"].items():
            assert abs(v - b["metrics"][k]) < 1e-3, (a["case_id"], k)
        assert a["edit"]["passes"] == b["edit"]["passes"]


def test_a_bad_case_in_a_batch_is_named(tiny):
    from dataclasses import replace

    from drift.editors import get_editor
    from drift.evaluation.evaluate import evaluate
    from drift.evaluation.spec import EvalSpec

    cases = load_cases("builtin")[:3]
    bad = replace(cases[1], subject="Nowhere Land")  # not in its prompt
    editor = get_editor("rome", steps=2, n_prefixes=2, stats_texts=CORPUS, layer=0)
    with pytest.raises(ValueError, match=bad.case_id):
        evaluate(tiny, [cases[0], bad, cases[2]], editor, EvalSpec(fluency=False, edit_batch=3))


def test_audit_with_batched_edits_gives_the_one_at_a_time_rows_in_the_cases_order(tiny):
    from drift.interp.audit import audit_cases

    cases = load_cases("builtin")[:3]
    compute = get_compute("rome", steps=3, n_prefixes=2, stats_texts=CORPUS, layer=0)
    alone = audit_cases(tiny, cases, compute, edit_batch=1, progress=False)
    together = audit_cases(tiny, cases, compute, edit_batch=3, progress=False)
    assert [r["case_id"] for r in together] == [c.case_id for c in cases]
    for a, b in zip(alone, together):
        for k, v in a["metrics"].items():
            assert abs(v - b["metrics"][k]) <= 1e-4 * max(1.0, abs(v)), k


def test_the_default_batch_is_one_case_on_a_cpu_and_fills_half_a_gpu(tiny, monkeypatch):
    from drift.editors import target

    assert target.auto_edit_batch(tiny) == target.CPU_EDIT_BATCH == 1
    monkeypatch.setattr(type(tiny), "device", property(lambda self: torch.device("cuda", 0)))
    per_case = target.case_bytes(tiny)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * per_case, 80 * per_case))
    assert target.auto_edit_batch(tiny) == 5  # half of the free memory
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (per_case, 80 * per_case))
    assert target.auto_edit_batch(tiny) == 1  # never fewer than one case
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10**6 * per_case, 0))
    assert target.auto_edit_batch(tiny) == target.MAX_EDIT_BATCH


def test_optimise_refuses_bad_options_naming_them(tiny):
    with pytest.raises(ValueError, match=r"stop_on must be 'total' or 'nll', got 'loss'"):
        optimise_targets(tiny, CASES[0], [("mlp_out", 1)], _terms(), stop_on="loss")
    with pytest.raises(ValueError, match=r"key layers \[0\] must be at or after the first edited layer 1"):
        optimise_targets(tiny, CASES[0], [("mlp_out", 1)], _terms(), key_layers=[0])


def test_a_bad_case_is_named_in_a_batch_and_its_own_error_kept_alone(tiny):
    """In a batch (two cases or more) the error names the case; a case alone gets the bare error."""
    from dataclasses import replace

    bad = replace(CASES[1], subject="Nowhere Land")  # not in its prompt
    with pytest.raises(ValueError) as alone:
        optimise_targets(tiny, bad, [("mlp_out", 0)], _terms(), steps=1)
    assert "Nowhere Land" in str(alone.value) and not str(alone.value).startswith("case ")
    with pytest.raises(ValueError) as batched:
        optimise_many(tiny, [CASES[0], bad], [("mlp_out", 0)], _terms(), steps=1)
    assert str(batched.value) == f"case {bad.case_id}: {alone.value}"


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_the_prefix_pass_runs_by_default_and_only_when_asked(tiny, monkeypatch, prefix_cache):
    assert tiny.supports_prefix
    calls = []
    real = tiny.prefix
    monkeypatch.setattr(tiny, "prefix", lambda *a, **k: calls.append(1) or real(*a, **k))
    kw = {} if prefix_cache else dict(prefix_cache=False)
    optimise_targets(tiny, CASES[0], [("mlp_out", 0)], _terms(), steps=1, **kw)
    assert len(calls) == int(prefix_cache)


def test_each_result_names_its_own_context_prefixed_prompts_and_rows(tiny):
    prefixes = ["", "So. "]
    results = optimise_many(tiny, CASES[:2], [("mlp_out", 0)], _terms(), prefixes=prefixes, steps=1)
    from drift.editors.target import build_batch

    for case, res in zip(CASES, results):
        assert res.prompts == [case.prompt, "So. " + case.prompt]
        alone, _, _ = build_batch(tiny, case, prefixes, 0)  # the case's rows as it has them alone
        assert alone.n_rewrite == 2 and alone.start_layer == 0 == res.batch.start_layer
        assert res.batch.n_rewrite == 2 and torch.equal(res.batch.tokens, alone.tokens)
        for name in ("lookup", "query", "lengths"):
            assert torch.equal(getattr(res.batch, name), getattr(alone, name)), name
        assert res.keys == {} and len(res.losses) == 1


def test_each_pass_is_logged_with_its_loss_terms(tiny, caplog):
    """At INFO, one line per case and pass: the pass out of the steps, the total and each term."""
    import logging

    with caplog.at_level(logging.INFO, logger="drift.editors.target"):
        res = optimise_targets(tiny, CASES[0], [("mlp_out", 0)], _terms(), steps=2, early_stop=0)
    lines = [r.getMessage() for r in caplog.records if r.name == "drift.editors.target"]
    assert len(lines) == 2
    for i, (line, losses) in enumerate(zip(lines, res.losses)):
        total = sum(v for k, v in losses.items() if k != "p_target")
        terms = ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
        assert line == f"case {CASES[0].case_id} step {i + 1}/2: loss {total:.4f} ({terms})"


def test_a_loss_term_sees_its_own_cases_rows(tiny):
    """In a batch, each case's terms get a view of its rows only: their tokens, real lengths,
    subject and query columns (as the step runs them), and where its rows sit in the step's
    activations."""
    from drift.editors.target import build_batch

    prefixes = ["", "So. "]
    together = optimise_many(tiny, CASES[:2], [("mlp_out", 0)], [RecordingTerm()], prefixes=prefixes, steps=1)
    first_row = 0
    for case, res in zip(CASES, together):
        view = res.terms[0].steps[0].extras["batch"]
        alone, _, _ = build_batch(tiny, case, prefixes, 0)
        n = alone.tokens.shape[0]
        assert view.lengths.tolist() == alone.lengths.tolist()
        for r in range(n):
            real = int(alone.lengths[r])
            assert view.tokens[r, :real].tolist() == alone.tokens[r, :real].tolist()
        # the prefix pass runs every row from its subject's last token, in column ``offset``
        assert view.lookup.tolist() == [view.offset] * n
        assert (view.query - view.lookup).tolist() == (alone.query - alone.lookup).tolist()
        assert view.rows.tolist() == list(range(first_row, first_row + n)) and view.n_rewrite == 2
        first_row += n


def test_one_cases_activation_memory_is_the_documented_estimate(tiny):
    """rows × columns × layers × (10 d_model + 4 d_mlp + 2 · 2 heads · columns) values, in the
    model's dtype: on the tiny model (32, 64, 4 heads, 2 layers) 23 × 24 × 2 × 960 × 4 bytes."""
    from types import SimpleNamespace

    from drift.editors.target import case_bytes

    assert case_bytes(tiny) == 23 * 24 * 2 * (320 + 256 + 384) * 4
    assert case_bytes(tiny, rows=3, columns=5) == 3 * 5 * 2 * (320 + 256 + 80) * 4
    half = SimpleNamespace(cfg=SimpleNamespace(**{**vars(tiny.cfg), "dtype": torch.bfloat16}))
    assert case_bytes(half) * 2 == case_bytes(tiny)
