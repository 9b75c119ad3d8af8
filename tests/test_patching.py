"""The patch scan: fast equals naive, full substitution reproduces the source, errors named."""

from __future__ import annotations

import pytest
import torch

from drift.editors.base import Edit, WeightDelta
from drift.interp.patching import Write, patch_scan, patch_scan_naive, record
from drift.interp.tracing import KINDS, centred


@pytest.fixture(scope="module")
def tiny4():
    from drift.model.tiny import tiny_bridge

    return tiny_bridge(seed=3, n_layers=4)


def _edit(model, scale=0.5):
    g = torch.Generator().manual_seed(0)
    w = model.weight("mlp_out", 1)
    return Edit([WeightDelta("mlp_out", 1, scale * torch.randn(w.shape, generator=g))])


def _states(L, T):
    states = [
        tuple(Write(s, j, (t,)) for j in centred(l, 3, L) for s in KINDS[k])
        for k in KINDS
        for l in range(L)
        for t in range(T)
    ]
    states += [
        tuple(Write("scores", j, (slice(None), T - 1, t)) for j in centred(l, 2, L))
        for l in range(L)
        for t in range(T)
    ]
    states += [(Write("pattern", l),) for l in range(L)] + [()]
    return states


def _sources(model, tokens, edit):
    L = model.cfg.n_layers
    with edit.applied(model):
        sites = sorted({s for kind in KINDS.values() for s in kind}) + ["pattern", "scores"]
        return record(model, tokens, [(s, l) for s in sites for l in range(L)])


def test_fast_patch_scan_equals_naive_loop_on_tiny_model(tiny4):
    tokens = torch.tensor([tiny4.encode("The Eiffel Tower is in the city of")])
    edit = _edit(tiny4)
    src = _sources(tiny4, tokens, edit)
    states = _states(tiny4.cfg.n_layers, tokens.shape[1])
    read = torch.tensor([5, 17, 250])
    fast = patch_scan(tiny4, tokens, states, src, read, batch_size=11)
    naive = patch_scan_naive(tiny4, tokens, states, src, read)
    torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0)
    assert fast.std(0).max() > 0  # the states do differ


def test_substituting_everything_reproduces_the_source_model(tiny4):
    tokens = torch.tensor([tiny4.encode("The Eiffel Tower is in")])
    edit = _edit(tiny4, scale=2.0)
    src = _sources(tiny4, tokens, edit)
    L, T = tiny4.cfg.n_layers, tokens.shape[1]
    everything = tuple(Write(s, l, (t,)) for s in ("attn_out", "mlp_out") for l in range(L) for t in range(T))
    read = torch.arange(20)
    with edit.applied(tiny4):
        edited = tiny4.forward(tokens)[0, -1].softmax(-1)[read]
    vanilla = tiny4.forward(tokens)[0, -1].softmax(-1)[read]
    out = patch_scan(tiny4, tokens, [everything, ()], src, read)
    torch.testing.assert_close(out[0], edited, atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], vanilla, atol=1e-6, rtol=0)
    assert (edited - vanilla).abs().max() > 1e-4


def test_missing_source_activation_is_named(tiny4):
    tokens = torch.tensor([tiny4.encode("The Eiffel Tower")])
    with pytest.raises(KeyError, match="write mlp_out@2 but"):
        patch_scan(tiny4, tokens, [(Write("mlp_out", 2, (0,)),)], {}, torch.tensor([1]))


def test_record_takes_one_sequence(tiny4):
    with pytest.raises(ValueError, match="one sequence"):
        record(tiny4, torch.zeros(2, 3, dtype=torch.long), [("mlp_out", 0)])


@pytest.mark.slow
def test_fast_patch_scan_equals_naive_loop_on_the_real_model(real):
    tokens = torch.tensor([real.encode("The Eiffel Tower is located in the city of")])
    L, T = real.cfg.n_layers, tokens.shape[1]
    g = torch.Generator().manual_seed(0)
    edit = Edit([WeightDelta("mlp_out", 4, 0.05 * torch.randn(real.weight("mlp_out", 4).shape, generator=g))])
    src = _sources(real, tokens, edit)
    states = [
        tuple(Write("attn_out", j, (t,)) for j in centred(l, 6, L)) for l in (3, 15, 27) for t in range(T)
    ]
    states += [(Write("pattern", l),) for l in (5, 20)]
    states += [(Write("scores", 20, (slice(None), T - 1, 3)),)]
    read = torch.tensor(real.encode_target("Paris")[:1] + real.encode_target("Rome")[:1])
    fast = patch_scan(real, tokens, states, src, read)
    naive = patch_scan_naive(real, tokens, states, src, read)
    torch.testing.assert_close(fast, naive, atol=1e-5, rtol=0)
