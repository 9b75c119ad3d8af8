"""ROME: a rank-one update of one layer's MLP output weights (main paper §2.2, App. B).

1. Key direction u = C⁻¹k̄: k̄ the MLP key (input of ``W_out``) at the subject's last token,
   averaged over the context-prefixed rewrite prompts (the model's own generated prefixes and
   the bare prompt, as the reference code does).
2. Value v* = v₀ + δ, δ found by :func:`drift.editors.target.optimise_targets` at the layer's
   MLP output (NLL of o_edit + ω·KL on "{s} is a" + weight decay, norm clamp); v₀ is the MLP
   output at the bare rewrite prompt.
3. Update, in TransformerLens orientation (``out = k @ W_out``, ``W_out [d_mlp, d_model]``),
   anchored at the **bare** prompt's key k_b as the reference code's compute_v does:
   ΔW = u ⊗ (v* − v_b) / (u · k_b), v_b the bare prompt's MLP output (k_b W plus any bias), so the
   bare rewrite prompt gets exactly v*, while keys
   uncorrelated with k̄ under C move little (``anchor="mean"``: solve at k̄ instead).

ROME-AWD (App. D.4) is the same with gradients blocked through attention weights while
optimising δ (``block_attention_grad=True``).

Example:
    >>> import drift
    >>> from drift.data import load_cases
    >>> model = drift.load_model()                                       # doctest: +SKIP
    >>> case = load_cases("builtin")[0]
    >>> edit = compute_rome(model, case, ROMEHParams(layer=0, steps=2))  # SmolLM2-135M: ROMEHParams()
    >>> [(d.which, d.layer, int(torch.linalg.matrix_rank(d.delta))) for d in edit.deltas]
    [('W_out', 0, 1)]
    >>> with edit.applied(model):                                        # doctest: +SKIP
    ...     model.target_prob(case.prompt, case.o_edit)                  # now high
    >>> tokens = torch.tensor([model.encode(case.prompt)])
    >>> s = model.subject_positions(case.prompt, case.subject)[-1]
    >>> with edit.applied(model):                                        # the bare prompt's MLP output is v*
    ...     torch.allclose(model.capture(tokens, "mlp_out", 0)[0, s], edit.info["v_star"], atol=1e-6)
    True
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
from torch import Tensor

from drift.data import EditCase
from drift.editors import presets
from drift.editors.base import Edit, WeightDelta
from drift.editors.context import ROME_CONTEXT, prefix_groups
from drift.editors.objectives import LossTerm, default_terms
from drift.editors.spread import ridged_system
from drift.editors.stats import key_second_moment
from drift.editors.target import optimise_many
from drift.model.adapter import Model


@dataclass(frozen=True)
class ROMEHParams:
    layer: int = 4  # SmolLM2-135M: an early MLP where subject facts are recalled (see presets.py)
    steps: int = 20  # forward passes of the δ optimisation (the last one only measures)
    lr: float = 0.5  # Adam learning rate (paper default)
    kl_factor: float = 0.0625  # ω, weight of the essence KL (paper default)
    weight_decay: float = 0.5  # λ on ‖δ‖/‖v₀‖² (reference form; squared_decay=True: ‖δ‖²/‖v₀‖²)
    clamp_norm: float = 4.0  # ‖δ‖ ≤ clamp_norm · ‖v₀‖
    context: tuple[tuple[int, int], ...] = ROME_CONTEXT  # generated prefixes: (tokens, count) groups
    n_prefixes: int = 0  # > 0: drift's n fixed prefixes (bare included) instead of generated ones
    prefix_seed: int = 0  # the draw of the generated prefixes (another seed: other texts, cached apart)
    block_attention_grad: bool = False  # True: ROME-AWD
    early_stop: float = 5e-2  # stop once the loss is below this (0: run every step)
    stop_on: str = "total"  # "total" loss (reference) or "nll" alone
    squared_decay: bool = False
    anchor: str = "bare"  # the key the update is solved at: "bare" prompt (reference) or "mean" key
    stats_texts: tuple[str, ...] | None = field(default=None, repr=False)  # None: default corpus
    stats_skip_first: bool = True  # leave position 0 out of C (False: every position, as the reference)
    extra_terms: tuple[LossTerm, ...] = ()  # e.g. (SADR(...),)


def preset(model: Model) -> ROMEHParams:
    """``model``'s family's settings (:data:`drift.editors.presets.EDITOR_SETTINGS`), else the
    defaults (SmolLM2-135M's) with the layer at 15% of its depth, noted once in an INFO line."""
    found = presets.editor_settings("rome", model)
    if found is not None:
        return replace(ROMEHParams(), **found)
    n = model.cfg.n_layers
    layer = max(0, min(n - 1, round(n * 0.15)))
    presets.note_fallback("preset", "rome", model, f"the defaults (SmolLM2-135M's) with layer {layer} of {n}")
    return replace(ROMEHParams(), layer=layer)


def rank_one_delta(
    W: Tensor, C: Tensor, k: Tensor, v: Tensor, k_anchor: Tensor | None = None, v_anchor: Tensor | None = None
) -> Tensor:
    """ΔW ``[d_mlp, d_model]`` = u ⊗ (v − v_a) / (u · k_a), u = C⁻¹k: the rank-one update along the
    key direction ``k [d_mlp]`` whitened by ``C [d_mlp, d_mlp]`` that moves the output at the anchor
    key ``k_anchor`` (default ``k``) from its current value ``v_anchor`` (default ``k_a @ W``; pass
    the module's real output where it has a bias) to ``v [d_model]`` exactly."""
    k_a = k if k_anchor is None else k_anchor
    # A tiny ridge only guards a degenerate C (few tokens); it moves u by < 1e-5 on a full-rank one.
    u = torch.linalg.solve(ridged_system(C, 1.0), k.double())  # C⁻¹ k
    current = k_a.double() @ W.double() if v_anchor is None else v_anchor.double()
    # at least float32 whatever the model's dtype: applying rounds W + ΔW to it once (editors.base)
    out = torch.promote_types(W.dtype, torch.float32)
    return (torch.outer(u, v.double() - current) / (u @ k_a.double())).to(out)


def compute_rome(model: Model, case: EditCase, hp: ROMEHParams | None = None) -> Edit:
    """Compute (never apply) the ROME edit for ``case``. See the module docstring."""
    return compute_rome_many(model, [case], hp)[0]


def compute_rome_many(model: Model, cases: Sequence[EditCase], hp: ROMEHParams | None = None) -> list[Edit]:
    """Compute (never apply) each case's ROME edit, their δ optimised together
    (:func:`drift.editors.target.optimise_many`): each edit is the one :func:`compute_rome`
    computes for its case alone (up to float rounding), for the model as it is now."""
    hp = hp or preset(model)
    if hp.anchor not in ("bare", "mean"):
        raise ValueError(f"ROME anchor must be 'bare' or 'mean', got {hp.anchor!r}")
    t0 = time.perf_counter()
    C = key_second_moment(model, [hp.layer], hp.stats_texts, skip_first=hp.stats_skip_first)[hp.layer]
    terms = default_terms(hp.kl_factor, hp.weight_decay, squared_decay=hp.squared_decay) + list(
        hp.extra_terms
    )
    prefixes = [p for group in prefix_groups(model, hp.context, hp.n_prefixes, hp.prefix_seed) for p in group]
    results = optimise_many(
        model,
        cases,
        [("mlp_out", hp.layer)],
        terms,
        prefixes=prefixes,
        steps=hp.steps,
        lr=hp.lr,
        clamp_norm=hp.clamp_norm,
        key_layers=[hp.layer],
        block_attention_grad=hp.block_attention_grad,
        early_stop=hp.early_stop,
        stop_on=hp.stop_on,
    )
    seconds = (time.perf_counter() - t0) / max(1, len(cases))  # the batch's time, shared out
    return [_rome_edit(model, hp, C, res, seconds, len(cases)) for res in results]


def _rome_edit(model: Model, hp: ROMEHParams, C: Tensor, res, seconds: float, batch: int) -> Edit:
    """The rank-one update from one case's optimised target (see the module docstring)."""
    site = ("mlp_out", hp.layer)
    keys = res.keys[hp.layer]  # [n_prefixes, d_mlp], row 0 the bare prompt
    k_mean = keys.mean(0)  # the direction: C⁻¹ of the key averaged over every context
    v_star = res.v0[site] + res.deltas[site]  # [d_model], v0 read at the bare prompt
    W = model.weight("W_out", hp.layer)
    if hp.anchor == "bare":  # the reference: (v* − the bare prompt's MLP output) / (u · k_bare)
        delta = rank_one_delta(W.detach(), C, k_mean, v_star, keys[0], res.v0[site])
    else:
        delta = rank_one_delta(W.detach(), C, k_mean, v_star)
    info = {
        "editor": "rome-awd" if hp.block_attention_grad else "rome",
        "layer": hp.layer,
        "losses": res.losses,
        "seconds": seconds,
        "delta_norm": float(delta.norm()),
        "v_star": v_star.detach(),  # what the bare rewrite prompt's MLP output becomes
    }
    if batch > 1:
        info["batch"] = batch  # optimised together with batch - 1 other cases
    return Edit([WeightDelta("W_out", hp.layer, delta)], info)
