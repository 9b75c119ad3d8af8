"""MEMIT and PMET: the layer-range update, efficacy on the real model, exact removal."""

from __future__ import annotations

import pytest
import torch

from drift.editors.base import Edit
from drift.editors.memit import MEMITHParams, compute_memit
from drift.editors.pmet import PMETHParams, compute_pmet
from drift.editors.spread import least_squares_delta, read_keys_and_value, spread_update
from drift.editors.stats import key_second_moment
from tests.conftest import weights_hash
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


def test_memit_layers_outside_the_model_are_named(tiny):
    with pytest.raises(ValueError, match=r"layers \[1, 5\] must be a non-empty subset of 0..1"):
        compute_memit(tiny, EIFFEL, MEMITHParams(layers=(1, 5), stats_texts=CORPUS))


def test_pmet_on_tiny_model_writes_only_mlp_weights(tiny):
    h0 = weights_hash(tiny)
    edit = compute_pmet(tiny, EIFFEL, PMETHParams(layers=(0, 1), steps=2, n_prefixes=2, stats_texts=CORPUS))
    assert weights_hash(tiny) == h0
    assert [(d.which, d.layer) for d in edit.deltas] == [("mlp_out", 0), ("mlp_out", 1)]


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
