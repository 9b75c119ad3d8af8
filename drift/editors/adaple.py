"""AdaPLE: PMET's targets with an "erase the old value" objective, for sequential editing.

AdaPLE paper §4.1 and App. C. Targets as in PMET (vectors on the attention and the MLP output of
the last layer L, only the MLP one written), spread over the range with the square-root divisor.
What differs is the per-layer solve, which also keeps the previously stored keys (C₀, weight λ)
but counts the edited keys K twice (App. C.1, Eq. 17 models erasing the old values V₁ = K W₀ as
fitting −V₁). In TransformerLens orientation (``out = k @ W_out``, ``K [n, d_mlp]``) the paper
gives two forms of its right-hand side, and drift offers both (``residual=``):

- ``"algorithm1"`` (default): ΔW = (λC₀ + 2KᵀK)⁻¹ Kᵀ R with R the residual share itself,
  r = (z − h_l)/√(L − l + 1), as Algorithm 1 (App. C.2) computes it;
- ``"eq4"``: R = V₂ − 3 K W₀ with V₂ = K W₀ + r, Eq. 4 taken literally, which moves the edited
  keys toward (V₂ − V₁)/2: the old value is removed and the new one written at half strength.

Drop-and-rescale (§4.2), the other half of the method, runs inside the layer loop as Algorithm 1
does: each layer's update is dropped and rescaled (p = 0.8 by default, the middle of the paper's
0.7–0.9) and applied before the next layer reads its residual.

Example:
    >>> import torch
    >>> K, W = torch.randn(3, 8), torch.randn(8, 4)
    >>> delta = erase_old_delta(K, torch.zeros(3, 4), W, torch.eye(8), lam=1e-6)
    >>> # with no new value and little to keep, the old values are erased toward zero … and beyond:
    >>> bool(((K @ (W + delta)).norm() < (K @ W).norm()))
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from drift.data import EditCase
from drift.editors.base import Edit
from drift.editors.memit import preset as _range_preset
from drift.editors.pmet import PMETHParams, pmet_range_edits
from drift.editors.spread import ridged_system
from drift.model.adapter import Model


@dataclass(frozen=True)
class AdaPLEHParams(PMETHParams):
    """PMET's settings (layers, λ, steps, clamps); the solve is AdaPLE's."""

    residual: str = "algorithm1"  # "algorithm1": R = the spread residual; "eq4": R = V₂ − 3KW₀
    drop_rate: float = 0.8  # drop-and-rescale inside the layer loop (Algorithm 1), p in 0.7-0.9


def preset(model: Model) -> AdaPLEHParams:
    """``model``'s family's AdaPLE settings (:mod:`drift.editors.presets`), else the defaults
    (SmolLM2-135M's: MEMIT's and PMET's layers 3-5 and λ) scaled to its depth."""
    return _range_preset(model, "adaple", AdaPLEHParams())


def erase_old_delta(K: Tensor, R: Tensor, W: Tensor, C: Tensor, lam: float) -> Tensor:
    """ΔW ``[d_mlp, d_model]`` = (λC + 2KᵀK)⁻¹ Kᵀ (V₂ − 3 K W) with V₂ = K W + R: AdaPLE's Eq. 4 taken
    literally, for keys ``K [n, d_mlp]``, residuals ``R [n, d_model]``, current weight ``W [d_mlp,
    d_model]`` and key second moment ``C [d_mlp, d_mlp]``. Float64 with a small ridge, as MEMIT's."""
    old = K.double() @ W.double()  # V₁ [n, d_model]
    return _adaple_solve(K, old + R.double() - 3.0 * old, C, lam)


def residual_delta(K: Tensor, R: Tensor, W: Tensor, C: Tensor, lam: float) -> Tensor:
    """ΔW = (λC + 2KᵀK)⁻¹ Kᵀ R: AdaPLE's Algorithm 1, the residual itself as R (``W`` unused)."""
    return _adaple_solve(K, R.double(), C, lam)


def _adaple_solve(K: Tensor, rhs_values: Tensor, C: Tensor, lam: float) -> Tensor:
    A = ridged_system(C, lam, K, k_weight=2.0)
    return torch.linalg.solve(A, K.double().T @ rhs_values).float()


SOLVES = {"algorithm1": residual_delta, "eq4": erase_old_delta}


def compute_adaple(model: Model, case: EditCase, hp: AdaPLEHParams | None = None) -> Edit:
    """Compute (never apply) the AdaPLE edit for ``case``, fused layer by layer at ``hp.drop_rate``.
    See the module docstring."""
    return compute_adaple_many(model, [case], hp)[0]


def compute_adaple_many(
    model: Model, cases: Sequence[EditCase], hp: AdaPLEHParams | None = None
) -> list[Edit]:
    """Each case's AdaPLE edit (none applied), their targets optimised together."""
    hp = hp or preset(model)
    if hp.residual not in SOLVES:
        raise ValueError(f"AdaPLE residual must be one of {sorted(SOLVES)}, got {hp.residual!r}")
    return pmet_range_edits(model, cases, hp, editor="adaple", solve=SOLVES[hp.residual])
