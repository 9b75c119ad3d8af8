"""Every model family drift is used on, as a tiny random model (``drift.model.tiny.FAMILIES``): it loads
through ``drift.load_model`` as a real checkpoint does, ROME and MEMIT edit it through the normal
API, removing each edit restores the weights bit for bit, and the tracing functions run on it.

GPT-2 (learned positions), GPT-J (partial rotary, attention and MLP in parallel), GPT-Neo (global
and local layers), GPT-NeoX (parallel residual), Llama, Qwen2 (biased q, k, v), Mistral (sliding
window), Gemma-2 (sliding and full layers, soft-capped logits) and Phi-3 (fused projections), each
at d_model 32 and 3 layers; GPT-J and GPT-NeoX also in bf16, the precision the paper ran them in."""

from __future__ import annotations

import pytest
import torch

from drift.data import load_cases
from drift.editors import get_compute
from drift.interp import tracing
from drift.interp.attention_drift import measure
from drift.model.tiny import FAMILIES, tiny_family
from tests.conftest import weights_hash

CASE = load_cases("builtin")[0]  # The Eiffel Tower ... Paris -> Rome
QUICK = dict(steps=2, n_prefixes=1)  # two passes over the bare prompt: the machinery, not efficacy
RUNS = [(f, torch.float32) for f in FAMILIES] + [("gptj", torch.bfloat16), ("gpt_neox", torch.bfloat16)]


@pytest.mark.parametrize("family, dtype", RUNS, ids=[f"{f}-{str(d).removeprefix('torch.')}" for f, d in RUNS])
def test_a_family_loads_edits_restores_and_traces(family, dtype):
    model = tiny_family(family, n_layers=3, dtype=dtype)
    assert model.dtype == dtype and model.cfg.n_layers == 3
    h0 = weights_hash(model)
    rome = get_compute("rome", **QUICK)(model, CASE)
    memit = get_compute("memit", **QUICK)(model, CASE)
    assert {d.layer for d in memit.deltas} == {0, 1}  # a range of two layers on a 3-layer model
    for edit in (rome, memit):
        with edit.applied(model):
            assert weights_hash(model) != h0
        assert weights_hash(model) == h0
    p = tracing.distracting_prompt(model, CASE)
    T = p.tokens.shape[1]
    subs = tracing.contaminating_substitution(model, rome, p, "attn", window=2)
    attn = tracing.attention_patching(model, rome, p, window=2)
    drift_ = measure(model, rome, p, CASE.o_edit)
    assert subs.probs.shape == (3, T, 2) and attn.probs.shape == (3, 2)
    assert drift_.kl.shape == (3, model.cfg.n_heads)
    assert all(torch.isfinite(x).all() for x in (subs.probs, attn.probs, drift_.kl))
    assert weights_hash(model) == h0
