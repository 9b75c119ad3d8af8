"""MEMIT: a target at the residual stream after the last critical layer, spread over a layer range.

1. Target: δ added to the residual stream after layer L (the last of the range) at the subject's
   last token, optimised by :func:`drift.editors.target.optimise_targets` with the same objective
   as ROME (NLL + ω·KL + weight decay, norm clamp); z = h_L + δ.
2. Update: :func:`drift.editors.spread.spread_update` writes z into the MLPs of the range in
   ascending order, each layer taking R/(L − l + 1) of what is left (MEMIT paper, Algorithm 1),
   with ΔW = (λC₀ + kᵀk)⁻¹kᵀr for the edit's one key k (the mean of the bare prompt's key and
   the mean of the generated prefixes' keys, as the reference code's compute_ks).

:func:`compute_range_edit` is the shared body of MEMIT, PMET (``drift.editors.pmet``) and AdaPLE
(``drift.editors.adaple``): they differ only in where the vectors are optimised, which one is
written into the MLPs, the spread divisor and the per-layer solve.

Example:
    >>> import drift
    >>> from drift.data import load_cases
    >>> model = drift.load_model()                                          # doctest: +SKIP
    >>> case = load_cases("builtin")[0]
    >>> edit = compute_memit(model, case, MEMITHParams(layers=(0, 1), steps=2))  # SmolLM2-135M: (3, 4, 5)
    >>> [(d.which, d.layer) for d in edit.deltas]
    [('W_out', 0), ('W_out', 1)]
    >>> with edit.applied(model):                                           # doctest: +SKIP
    ...     model.target_prob(case.prompt, case.o_edit)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from drift.data import EditCase
from drift.editors import presets
from drift.editors.base import Edit, WeightDelta
from drift.editors.context import MEMIT_CONTEXT, prefix_groups
from drift.editors.fusion import case_seed, drop_and_rescale
from drift.editors.objectives import LossTerm, default_terms
from drift.editors.spread import Solver, even, group_mean_weights, keep_old, spread_update
from drift.editors.stats import key_second_moment
from drift.editors.target import Site, optimise_many
from drift.model.adapter import Model


@dataclass(frozen=True)
class MEMITHParams:
    layers: tuple[int, ...] = (3, 4, 5)  # SmolLM2-135M: around ROME's layer 4 (see below)
    steps: int = 20  # forward passes of the δ optimisation (the last one only measures)
    lr: float = 0.5
    kl_factor: float = 0.0625  # ω
    weight_decay: float = 0.5  # λ on ‖δ‖/‖v₀‖² (reference form)
    clamp_norm: float = 0.75  # ‖δ‖ ≤ clamp_norm · ‖h_L‖ (MEMIT's residual-stream clamp on GPT-J)
    mom2_weight: float = 2000.0  # λ, how strongly previously stored keys are kept
    context: tuple[tuple[int, int], ...] = MEMIT_CONTEXT  # generated prefixes: (tokens, count) groups
    n_prefixes: int = 0  # > 0: drift's n fixed prefixes (bare included) instead of generated ones
    prefix_seed: int = 0  # the draw of the generated prefixes (another seed: other texts, cached apart)
    block_attention_grad: bool = False
    early_stop: float = 5e-2  # stop once the loss is below this (0: run every step)
    stop_on: str = "total"  # "total" loss (reference) or "nll" alone
    squared_decay: bool = False
    drop_rate: float = 0.0  # drop-and-rescale of each layer's update inside the layer loop (0: off)
    drop_seed: int = 0
    stats_texts: tuple[str, ...] | None = field(default=None, repr=False)
    extra_terms: tuple[LossTerm, ...] = ()  # e.g. (SADR(...),)


# Defaults, SmolLM2-135M's (30 layers, d_mlp 1536): layers 3-5, the range the reference code uses
# for TinyLlama, another small Llama; λ = 2000, because what one key writes of its residual is
# s/(λ + s) with s = kᵀC⁻¹k ≈ d_mlp: λ = 2000 writes ≈ 40% per layer here, as λ = 15000 does on
# GPT-J (d_mlp 16384), where TinyLlama's λ = 20000 would write < 10%. Other models:
# drift.editors.presets.


def preset(model: Model, editor: str = "memit", default=MEMITHParams()):
    """``model``'s family's settings for ``editor`` (:data:`drift.editors.presets.EDITOR_SETTINGS`)
    on ``default``, else ``default`` with its range moved to ~10-17% depth, noted once in an INFO
    line."""
    found = presets.editor_settings(editor, model)
    if found is not None:
        return replace(default, **found)
    n = model.cfg.n_layers
    lo = max(0, round(n * 0.1))
    hi = min(n - 1, max(lo, round(n * 0.17)))
    presets.note_fallback(
        "preset", editor, model, f"the defaults (SmolLM2-135M's) with layers {lo}-{hi} of {n}"
    )
    return replace(default, layers=tuple(range(lo, hi + 1)))


def checked_layers(model: Model, layers: Sequence[int], editor: str) -> list[int]:
    """``layers`` in ascending order; a ``ValueError`` naming them unless they are a non-empty
    subset of the model's layers."""
    if not layers or any(not 0 <= l < model.cfg.n_layers for l in layers):
        raise ValueError(
            f"{editor}: layers {list(layers)} must be a non-empty subset of 0..{model.cfg.n_layers - 1}"
        )
    return sorted(layers)


def compute_range_edit(model: Model, case: EditCase, hp: MEMITHParams, **how) -> Edit:
    """Optimise vectors at ``opt_sites``, then spread ``value_site``'s target over ``hp.layers``,
    each layer's delta from ``solve`` (see :func:`drift.editors.spread.spread_update`)."""
    return compute_range_edits(model, [case], hp, **how)[0]


def compute_range_edits(
    model: Model,
    cases: Sequence[EditCase],
    hp: MEMITHParams,
    *,
    opt_sites: Sequence[Site],
    value_site: Site,
    divisor: Callable[[int], float],
    editor: str,
    solve: Solver = keep_old,
    pmet_schedule: bool = False,
) -> list[Edit]:
    """:func:`compute_range_edit` for each case, their vectors optimised together
    (:func:`drift.editors.target.optimise_many`); each case's update is spread on its own, over
    the model as it is now (every edit is computed against the same unedited weights)."""
    t0 = time.perf_counter()
    layers = checked_layers(model, hp.layers, editor)
    C = key_second_moment(model, layers, hp.stats_texts)
    terms = default_terms(hp.kl_factor, hp.weight_decay, squared_decay=hp.squared_decay) + list(
        hp.extra_terms
    )
    groups = prefix_groups(model, hp.context, hp.n_prefixes, hp.prefix_seed)
    results = optimise_many(
        model,
        cases,
        opt_sites,
        terms,
        prefixes=[p for g in groups for p in g],
        steps=hp.steps,
        lr=hp.lr,
        clamp_norm=hp.clamp_norm,
        block_attention_grad=hp.block_attention_grad,
        early_stop=hp.early_stop,
        stop_on=hp.stop_on,
        pmet_schedule=pmet_schedule,
    )
    edits = []
    for case, res in zip(cases, results):
        batch = res.batch
        n = batch.n_rewrite
        target = res.v0[value_site] + res.deltas[value_site]
        fuse = None
        if hp.drop_rate:
            fuse = _dropper(hp.drop_rate, case_seed(case.case_id, hp.drop_seed))
        deltas = spread_update(
            model,
            batch.tokens[:n],
            batch.lookup[:n],
            layers,
            value_site,
            target,
            C,
            hp.mom2_weight,
            divisor,
            solve,
            key_weights=group_mean_weights([len(g) for g in groups]),
            fuse=fuse,
        )
        info = {
            "editor": editor,
            "layers": layers,
            "losses": res.losses,
            "delta_norms": [float(d.delta.norm()) for d in deltas],
        }
        if hp.drop_rate:
            info["fusion"] = {"drop_and_rescale": hp.drop_rate, "seed": hp.drop_seed, "per_layer": True}
        if len(cases) > 1:
            info["batch"] = len(cases)  # optimised together with the other cases
        edits.append(Edit(deltas, info))
    seconds = (time.perf_counter() - t0) / len(cases)  # the batch's time, shared out
    for e in edits:
        e.info["seconds"] = seconds
    return edits


def _dropper(rate: float, seed: int) -> Callable[[WeightDelta], WeightDelta]:
    """Drop-and-rescale of one layer's delta, its mask seeded by ``seed`` + the layer."""
    return lambda d: drop_and_rescale(Edit([d]), rate, seed=seed + d.layer).deltas[0]


def compute_memit(model: Model, case: EditCase, hp: MEMITHParams | None = None) -> Edit:
    """Compute (never apply) the MEMIT edit for ``case``. See the module docstring."""
    return compute_memit_many(model, [case], hp)[0]


def compute_memit_many(model: Model, cases: Sequence[EditCase], hp: MEMITHParams | None = None) -> list[Edit]:
    """Each case's MEMIT edit (none applied), their targets optimised together."""
    hp = hp or preset(model)
    site = ("resid_post", checked_layers(model, hp.layers, "memit")[-1])
    return compute_range_edits(
        model, cases, hp, opt_sites=[site], value_site=site, divisor=even, editor="memit"
    )
