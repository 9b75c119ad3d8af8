"""ROME: a rank-one update of one layer's MLP output weights (main paper §2.2, App. B).

1. Key k*: the MLP key (input of ``W_out``) at the subject's last token, averaged over the
   context-prefixed rewrite prompts.
2. Value v* = v₀ + δ, δ found by :func:`drift.editors.target.optimise_targets` at the layer's
   MLP output (NLL of o_edit + ω·KL on "{s} is a" + weight decay, norm clamp).
3. Update, in TransformerLens orientation (``out = k @ W_out``, ``W_out [d_mlp, d_model]``):
   ΔW = (C⁻¹k*) ⊗ (v* − k* W) / ((C⁻¹k*) · k*), so k* (W + ΔW) = v* exactly, while keys
   uncorrelated with k* under C move little.

ROME-AWD (App. D.4) is the same with gradients blocked through attention weights while
optimising δ (``block_attention_grad=True``).

Example:
    >>> import drift
    >>> from drift.data import load_cases
    >>> model = drift.load_model()                                       # doctest: +SKIP
    >>> case = load_cases("builtin")[0]
    >>> edit = compute_rome(model, case, ROMEHParams())                  # doctest: +SKIP
    >>> with edit.applied(model):                                        # doctest: +SKIP
    ...     model.target_prob(case.prompt, case.o_edit)                  # now high
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from drift.adapter import Model
from drift.data import EditCase
from drift.editors.base import Edit, WeightDelta
from drift.editors.context import context_prefixes
from drift.editors.objectives import LossTerm, default_terms
from drift.editors.stats import key_second_moment
from drift.editors.target import optimise_targets


@dataclass(frozen=True)
class ROMEHParams:
    layer: int = 4  # SmolLM2-135M: an early MLP where subject facts are recalled (see PRESETS)
    steps: int = 20  # optimisation steps for δ (paper default)
    lr: float = 0.5  # Adam learning rate (paper default)
    kl_factor: float = 0.0625  # ω, weight of the essence KL (paper default)
    weight_decay: float = 0.5  # λ on ‖δ‖²/‖v₀‖²
    clamp_norm: float = 4.0  # ‖δ‖ ≤ clamp_norm · ‖v₀‖
    n_prefixes: int = 6  # context prefixes including the bare prompt
    block_attention_grad: bool = False  # True: ROME-AWD
    early_stop: float = 5e-2  # stop once the NLL of o_edit is below this (0: always run every step)
    stats_texts: tuple[str, ...] | None = field(default=None, repr=False)  # None: sampled corpus
    extra_terms: tuple[LossTerm, ...] = ()  # e.g. (SADR(...),)


# Presets per model. SmolLM2-135M (30 layers): layer 4, early like ROME's GPT-J layer 5 of 28.
# The larger models: the layers of the main paper's App. C.2 (lr 0.5, 20 steps, ω = 0.0625 for
# all; GPT-NeoX-20B at layer 5 as written there, where ROME's own release used 15), GPT-2-XL at
# ROME's published layer 17; weight decay 1e-3 on the Llama-family models as in their releases.
PRESETS: dict[str, ROMEHParams] = {
    "smollm2-135m": ROMEHParams(layer=4),
    "EleutherAI/gpt-j-6B": ROMEHParams(layer=5, weight_decay=0.5, clamp_norm=4.0),
    "gpt2-xl": ROMEHParams(layer=17, weight_decay=0.5, clamp_norm=4.0),
    "meta-llama/Meta-Llama-3-8B": ROMEHParams(layer=5, weight_decay=1e-3, clamp_norm=4.0),
    "EleutherAI/gpt-neox-20b": ROMEHParams(layer=5, weight_decay=0.5, clamp_norm=4.0),
    "meta-llama/Llama-2-13b-hf": ROMEHParams(layer=15, weight_decay=1e-3, clamp_norm=4.0),
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": ROMEHParams(layer=4, weight_decay=1e-3, clamp_norm=4.0),
}


def preset(model: Model) -> ROMEHParams:
    """The preset for ``model`` by name, else defaults with the layer scaled to its depth."""
    if model.name in PRESETS:
        return PRESETS[model.name]
    return replace(ROMEHParams(), layer=max(0, min(model.cfg.n_layers - 1, round(model.cfg.n_layers * 0.15))))


def rank_one_delta(W: Tensor, C: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """ΔW ``[d_mlp, d_model]`` with ``k @ (W + ΔW) = v`` and minimal change under the key
    covariance ``C [d_mlp, d_mlp]``; ``k [d_mlp]``, ``v [d_model]``."""
    C = C.double()
    # A small ridge keeps the solve stable when C comes from a few thousand tokens.
    C = C + 1e-4 * C.diagonal().mean() * torch.eye(C.shape[0], dtype=C.dtype, device=C.device)
    u = torch.linalg.solve(C, k.double())  # C⁻¹ k
    r = v.double() - k.double() @ W.double()
    return (torch.outer(u, r) / (u @ k.double())).to(W.dtype)


def compute_rome(model: Model, case: EditCase, hp: ROMEHParams | None = None) -> Edit:
    """Compute (never apply) the ROME edit for ``case``. See the module docstring."""
    hp = hp or preset(model)
    t0 = time.perf_counter()
    C = key_second_moment(model, [hp.layer], hp.stats_texts)[hp.layer]
    terms = default_terms(hp.kl_factor, hp.weight_decay) + list(hp.extra_terms)
    res = optimise_targets(
        model, case, [("mlp_out", hp.layer)], terms,
        prefixes=context_prefixes(model, hp.n_prefixes), steps=hp.steps, lr=hp.lr,
        clamp_norm=hp.clamp_norm, key_layers=[hp.layer], block_attention_grad=hp.block_attention_grad,
        early_stop=hp.early_stop,
    )
    site = ("mlp_out", hp.layer)
    k_star = res.keys[hp.layer].mean(0)  # [d_mlp]
    v_star = res.v0[site] + res.deltas[site]  # [d_model]
    W = model.weight("mlp_out", hp.layer)
    delta = rank_one_delta(W.detach(), C, k_star, v_star)
    info = {"editor": "rome-awd" if hp.block_attention_grad else "rome", "layer": hp.layer,
            "losses": res.losses, "seconds": time.perf_counter() - t0, "delta_norm": float(delta.norm())}
    return Edit([WeightDelta("mlp_out", hp.layer, delta)], info)
