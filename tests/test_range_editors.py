"""MEMIT and PMET: the layer-range update, efficacy on the real model, exact removal."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch

from drift.editors.base import Edit, WeightDelta
from drift.editors.memit import MEMITHParams, compute_memit
from drift.editors.pmet import PMETHParams, compute_pmet
from drift.editors.rome import compute_rome
from drift.editors.spread import least_squares_delta, read_keys_and_value, spread_update
from drift.editors.stats import key_second_moment
from tests.conftest import ConstantTerm, weights_hash
from tests.test_rome import CORPUS, EIFFEL


def test_least_squares_delta_fits_the_keys_when_lambda_is_small_and_shrinks_when_large():
    g = torch.Generator().manual_seed(0)
    K, R = torch.randn(4, 16, generator=g), torch.randn(4, 8, generator=g)
    C = torch.eye(16)
    torch.testing.assert_close(K @ least_squares_delta(K, R, C, 1e-6), R, atol=1e-3, rtol=1e-3)
    assert least_squares_delta(K, R, C, 1e3).norm() < 0.05 * least_squares_delta(K, R, C, 1e-6).norm()


def _site_value(model, tokens, lookup, site):
    return read_keys_and_value(model, tokens, lookup, site[1], site)[1]


@pytest.mark.parametrize("site", [("resid_post", 1), ("mlp_out", 1)])
def test_spread_update_moves_the_site_to_the_target_and_leaves_the_model_unchanged(tiny, site):
    tokens, _ = tiny.pad([tiny.encode("The Eiffel Tower is in"), tiny.encode("So, the Eiffel Tower is in")])
    lookup = torch.tensor([3, 6])  # any fixed positions serve the algebra
    C = key_second_moment(tiny, [0, 1], CORPUS)
    before = _site_value(tiny, tokens, lookup, site)
    target = before + torch.randn(before.shape[0], generator=torch.Generator().manual_seed(1))
    h0 = weights_hash(tiny)
    deltas = spread_update(tiny, tokens, lookup, [0, 1], site, target, C, lam=1e-4)
    assert weights_hash(tiny) == h0
    assert [d.layer for d in deltas] == [0, 1]
    with Edit(deltas).applied(tiny):
        after = _site_value(tiny, tokens, lookup, site)
    # The last layer takes the whole remaining residual, so the site reaches the target.
    assert (after - target).norm() < 0.05 * (before - target).norm()
    assert weights_hash(tiny) == h0


def test_spread_update_needs_the_site_at_the_last_layer(tiny):
    tokens, _ = tiny.pad([tiny.encode("The Eiffel Tower is in")])
    with pytest.raises(ValueError, match="must be the last of the edited layers"):
        spread_update(tiny, tokens, torch.tensor([3]), [0, 1], ("resid_post", 0), torch.zeros(32), {}, 1.0)


@pytest.mark.parametrize("layers", [(1, 5), (0, 2), (-1, 0), ()])
def test_memit_layers_outside_the_model_are_named(tiny, layers):
    """The tiny model has layers 0 and 1: its depth (2) is already outside."""
    with pytest.raises(
        ValueError,
        match=rf"^memit: layers \[{', '.join(map(str, layers))}\] must be a non-empty subset of 0..1$",
    ):
        compute_memit(tiny, EIFFEL, MEMITHParams(layers=layers, stats_texts=CORPUS))


@pytest.mark.parametrize("editor", ["pmet", "adaple"])
def test_an_empty_layer_range_is_named_by_every_range_editor(tiny, editor):
    from drift.editors.adaple import AdaPLEHParams, compute_adaple

    compute, params = (compute_pmet, PMETHParams) if editor == "pmet" else (compute_adaple, AdaPLEHParams)
    with pytest.raises(ValueError, match=rf"{editor}: layers \[\] must be a non-empty subset of 0..1"):
        compute(tiny, EIFFEL, params(layers=(), stats_texts=CORPUS))


# Each setting of MEMITHParams that steers the optimisation, at a value other than its default, and
# what optimise_targets takes for it. The first pass's NLL is 5.86 and the total (NLL + a constant
# 1) 6.86: a cut of 10 stops at once, a cut of 6.3 only when the NLL alone is watched.
_RANGE_KNOBS = {
    "lr": (dict(lr=0.2), dict(lr=0.2)),
    "clamp_norm": (dict(clamp_norm=0.05), dict(clamp_norm=0.05)),
    "squared_decay": (dict(squared_decay=True, weight_decay=5.0), dict(squared=True, weight_decay=5.0)),
    "block_attention_grad": (dict(block_attention_grad=True), dict(block_attention_grad=True)),
    "early_stop": (dict(early_stop=10.0), dict(early_stop=10.0)),
    "stop_on": (dict(stop_on="nll", early_stop=6.3), dict(stop_on="nll", early_stop=6.3)),
}


def _flat(losses: list[dict[str, float]]) -> list[float]:
    return [v for l in losses for _, v in sorted(l.items())]


@pytest.mark.parametrize("editor", ["rome", "memit"])
@pytest.mark.parametrize("knob", list(_RANGE_KNOBS))
def test_each_setting_reaches_the_optimisation(tiny, knob, editor):
    """Each setting is the optimisation's: the editor's loss trace is optimise_targets' at that
    value and differs from the trace with that one setting at its default (so a setting dropped on
    the way is caught)."""
    from drift.editors.context import prefix_groups
    from drift.editors.objectives import default_terms
    from drift.editors.rome import ROMEHParams
    from drift.editors.target import optimise_targets

    hp_kw, opt_kw = (dict(kw) for kw in _RANGE_KNOBS[knob])
    squared, decay = opt_kw.pop("squared", False), opt_kw.pop("weight_decay", 0.5)
    common = dict(steps=4, n_prefixes=2, stats_texts=CORPUS, extra_terms=(ConstantTerm(),), **hp_kw)
    if editor == "rome":
        hp, site, clamp, keys = ROMEHParams(layer=0, **common), ("mlp_out", 0), 4.0, dict(key_layers=[0])
    else:
        hp, site, clamp, keys = MEMITHParams(layers=(0,), **common), ("resid_post", 0), 0.75, {}
    prefixes = [p for g in prefix_groups(tiny, hp.context, hp.n_prefixes) for p in g]

    def trace(squared=False, **kw):
        terms = default_terms(hp.kl_factor, decay, squared_decay=squared) + [ConstantTerm()]
        opts = dict(steps=4, lr=0.5, clamp_norm=clamp, early_stop=5e-2, prefixes=prefixes, **keys) | kw
        return _flat(optimise_targets(tiny, EIFFEL, [site], terms, **opts).losses)

    compute = compute_rome if editor == "rome" else compute_memit
    got = _flat(compute(tiny, EIFFEL, hp).info["losses"])
    assert got == pytest.approx(trace(squared, **opt_kw), rel=1e-6)
    assert got != pytest.approx(trace(**{k: v for k, v in opt_kw.items() if k != knob}), rel=1e-6)


def test_memits_record_of_an_edit(tiny):
    """info: the layers in order, each layer's ‖ΔW‖, the fusion's setting, the batch size when
    optimised together, and each case's share of the batch's wall time."""
    import time

    from drift.editors.memit import compute_memit_many

    hp = MEMITHParams(layers=(1, 0), steps=2, n_prefixes=2, stats_texts=CORPUS)
    alone = compute_memit(tiny, EIFFEL, hp)
    assert alone.info["layers"] == [0, 1] and "batch" not in alone.info and "fusion" not in alone.info
    assert alone.info["delta_norms"] == [pytest.approx(float(d.delta.norm())) for d in alone.deltas]
    other = replace(EIFFEL, case_id="eiffel-2")
    t0 = time.perf_counter()
    two = compute_memit_many(tiny, [EIFFEL, other], replace(hp, drop_rate=0.5, drop_seed=3))
    wall = time.perf_counter() - t0
    for e in two:
        assert e.info["batch"] == 2
        assert e.info["fusion"] == {"drop_and_rescale": 0.5, "seed": 3, "per_layer": True}
        assert e.info["seconds"] == two[0].info["seconds"] > 0
    assert 2 * two[0].info["seconds"] <= wall


def test_each_layers_drop_mask_is_seeded_by_its_layer(tiny):
    """Over two layers, layer l's kept entries are those drop-and-rescale keeps at the case's seed
    + l (a pattern fixed by the seed alone, whatever the update's values)."""
    from drift.editors.fusion import case_seed, drop_and_rescale

    hp = MEMITHParams(layers=(0, 1), steps=2, n_prefixes=2, stats_texts=CORPUS, drop_rate=0.5, drop_seed=2)
    edit = compute_memit(tiny, EIFFEL, hp)
    for d in edit.deltas:
        ones = Edit([WeightDelta(d.which, d.layer, torch.ones_like(d.delta))])
        kept = drop_and_rescale(ones, 0.5, seed=case_seed(EIFFEL.case_id, 2) + d.layer).deltas[0].delta != 0
        assert torch.equal(d.delta != 0, kept), d.layer


def test_a_dropped_layer_update_is_masked_by_its_cases_seed(tiny):
    """A layer's update is the undropped one through
    drop-and-rescale seeded by the case's id, the drop seed and the layer: two cases with the
    same rewrite get other masks, another drop seed another mask."""
    from drift.editors.fusion import case_seed, drop_and_rescale
    from drift.editors.memit import compute_memit_many

    hp = MEMITHParams(layers=(0,), steps=2, n_prefixes=2, stats_texts=CORPUS)  # z below the last layer
    other = replace(EIFFEL, case_id="eiffel-2")
    plain = compute_memit(tiny, EIFFEL, hp).deltas[0]
    for seed in (0, 5):
        dropped = compute_memit_many(tiny, [EIFFEL, other], replace(hp, drop_rate=0.5, drop_seed=seed))
        for case, edit in zip([EIFFEL, other], dropped):
            want = drop_and_rescale(Edit([plain]), 0.5, seed=case_seed(case.case_id, seed) + 0).deltas[0]
            torch.testing.assert_close(edit.deltas[0].delta, want.delta)
        assert not torch.equal(dropped[0].deltas[0].delta != 0, dropped[1].deltas[0].delta != 0)


def test_pmet_on_tiny_model_writes_only_mlp_weights(tiny):
    h0 = weights_hash(tiny)
    edit = compute_pmet(tiny, EIFFEL, PMETHParams(layers=(0, 1), steps=2, n_prefixes=2, stats_texts=CORPUS))
    assert weights_hash(tiny) == h0
    assert [(d.which, d.layer) for d in edit.deltas] == [("W_out", 0), ("W_out", 1)]


@pytest.mark.slow
@pytest.mark.parametrize("compute", [compute_memit, compute_pmet], ids=["memit", "pmet"])
def test_range_editors_edit_the_real_model_and_are_removed_exactly(real, compute):
    h0 = weights_hash(real)
    louvre = real.target_prob("The Louvre is located in the city of", "Paris")
    edit = compute(real, EIFFEL)
    assert weights_hash(real) == h0
    assert [d.layer for d in edit.deltas] == [3, 4, 5]
    with edit.applied(real):
        assert real.target_prob(EIFFEL.prompt, "Rome") > 0.5 > real.target_prob(EIFFEL.prompt, "Paris")
        assert abs(real.target_prob("The Louvre is located in the city of", "Paris") - louvre) < 0.1
    assert weights_hash(real) == h0


def test_interruption_between_layers_leaves_the_weights_untouched(tiny, monkeypatch):
    """The range update applies the lower layers' deltas while reading the next layer's keys; a
    KeyboardInterrupt there must still restore every weight."""
    import drift.editors.spread as spread

    calls = {"n": 0}
    real_read = spread.read_keys_and_value

    def interrupting(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the first layer's delta is in the model now
            raise KeyboardInterrupt
        return real_read(*args, **kw)

    monkeypatch.setattr(spread, "read_keys_and_value", interrupting)
    h0 = weights_hash(tiny)
    with pytest.raises(KeyboardInterrupt):
        compute_memit(tiny, EIFFEL, MEMITHParams(layers=(0, 1), steps=2, n_prefixes=2, stats_texts=CORPUS))
    assert calls["n"] == 2 and weights_hash(tiny) == h0


# ROME's layer and MEMIT's / PMET's layer ranges per model: the reference code's hparams files where
# it has one (its Llama-2-13B ROME file edits layer 6, where the main paper's App. C.2 says 15: the
# code is followed), else the main paper's App. C.2.
PAPER_LAYERS = {
    "EleutherAI/gpt-j-6B": (5, range(3, 9), range(3, 9)),
    "meta-llama/Meta-Llama-3-8B": (5, range(4, 9), range(4, 9)),
    "EleutherAI/gpt-neox-20b": (5, range(13, 17), range(13, 17)),
    "meta-llama/Llama-2-13b-hf": (6, range(5, 10), range(7, 10)),
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": (4, range(3, 6), range(3, 6)),
}


@pytest.mark.parametrize("name", sorted(PAPER_LAYERS))
def test_a_hub_model_gets_the_papers_layers_by_its_name(name):
    from types import SimpleNamespace

    from drift.editors import memit, pmet, rome

    model = SimpleNamespace(name=name, cfg=SimpleNamespace(n_layers=40))
    layer, memit_layers, pmet_layers = PAPER_LAYERS[name]
    assert rome.preset(model).layer == layer
    assert memit.preset(model).layers == tuple(memit_layers)
    assert pmet.preset(model).layers == tuple(pmet_layers)


def test_an_unknown_model_gets_layers_scaled_to_its_depth():
    from types import SimpleNamespace

    from drift.editors import memit, rome

    model = SimpleNamespace(name="someone/new-model", cfg=SimpleNamespace(n_layers=40))
    assert rome.preset(model).layer == 6
    assert memit.preset(model).layers == (4, 5, 6, 7)
    shallow = SimpleNamespace(name="someone/two-layers", cfg=SimpleNamespace(n_layers=2))
    assert rome.preset(shallow).layer == 0 and memit.preset(shallow).layers == (0,)
    single = SimpleNamespace(name="someone/one-layer", cfg=SimpleNamespace(n_layers=1))
    assert rome.preset(single).layer == 0 and memit.preset(single).layers == (0,)


@pytest.mark.parametrize("editor", ["memit", "pmet", "adaple"])
def test_without_settings_a_range_editor_takes_its_preset_for_the_model(tiny, editor, monkeypatch):
    import drift.editors.adaple as adaple
    import drift.editors.memit as memit
    import drift.editors.pmet as pmet
    from drift.editors.adaple import AdaPLEHParams

    module, params = {
        "memit": (memit, MEMITHParams),
        "pmet": (pmet, PMETHParams),
        "adaple": (adaple, AdaPLEHParams),
    }[editor]
    asked = []
    small = params(layers=(0,), steps=2, n_prefixes=2, stats_texts=CORPUS)
    monkeypatch.setattr(module, "preset", lambda model: asked.append(model) or small)
    edit = getattr(module, f"compute_{editor}")(tiny, EIFFEL)
    assert asked == [tiny] and edit.info["editor"] == editor and len(edit.info["losses"]) <= 2


def test_a_bad_adaple_residual_is_refused_naming_the_choices(tiny):
    from drift.editors.adaple import SOLVES, AdaPLEHParams, compute_adaple

    want = f"AdaPLE residual must be one of {sorted(SOLVES)}, got 'odd'"
    with pytest.raises(ValueError, match=f"^{re.escape(want)}$"):
        compute_adaple(tiny, EIFFEL, AdaPLEHParams(layers=(0,), residual="odd", stats_texts=CORPUS))


def test_the_range_update_names_the_editor_that_asked_for_a_bad_range(tiny):
    """compute_range_edits is the mechanism custom range editors call: its own check names them."""
    from drift.editors.memit import compute_range_edits
    from drift.editors.spread import even

    site = ("resid_post", 1)
    with pytest.raises(ValueError, match=r"^mine: layers \[3\] must be a non-empty subset of 0..1$"):
        compute_range_edits(
            tiny,
            [EIFFEL],
            MEMITHParams(layers=(3,)),
            opt_sites=[site],
            value_site=site,
            divisor=even,
            editor="mine",
        )


def test_one_cases_range_edit_is_memits_for_memits_sites(tiny):
    """compute_range_edit, the entry point of a custom range editor, with MEMIT's layout is MEMIT."""
    from drift.editors.memit import compute_range_edit
    from drift.editors.spread import even

    hp = MEMITHParams(layers=(0,), steps=3, n_prefixes=2, stats_texts=CORPUS)
    site = ("resid_post", 0)
    got = compute_range_edit(
        tiny, EIFFEL, hp, opt_sites=[site], value_site=site, divisor=even, editor="memit"
    )
    want = compute_memit(tiny, EIFFEL, hp)
    assert got.info["editor"] == "memit" and got.info["losses"] == want.info["losses"]
    assert torch.equal(got.deltas[0].delta, want.deltas[0].delta)
