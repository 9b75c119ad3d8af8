"""AdaPLE: PMET's targets with an "erase the old value" objective, for sequential editing.

AdaPLE paper §4.1 and App. C. Targets as in PMET (vectors on the attention and the MLP output of
the last layer L, only the MLP one written), spread over the range with the square-root divisor.
What differs is the per-layer solve. Besides keeping the previously stored keys (C₀, weight λ)
and writing the new values V₂ at the edited keys K, the objective erases the old values
V₁ = K W₀ there (paper Eq. 3); the paper's normal equation (App. C.1, Eq. 17) models the erasure
as fitting −V₁. In TransformerLens orientation (``out = k @ W_out``, ``K [n, d_mlp]``):

    ΔW = (λ C₀ + 2 KᵀK)⁻¹ Kᵀ R,    R = V₂ − 3 K W₀     (paper Eq. 4),

with V₂ = K W₀ + r, r the share of the residual this layer takes (PMET's r / √(L − l + 1)).
Taken literally this moves the edited keys toward (V₂ − V₁)/2, not V₂: the old value is removed
and the new one written at half strength. On SmolLM2-135M that erases the old fact strongly and
inserts the new one more weakly than PMET (see ``tests/test_adaple.py`` and the README).

Drop-and-rescale fusion (paper §4.2), the other half of the method, is applied to any editor's
output by :func:`drift.editors.fusion.drop_and_rescale`; ``drift.editors.get_compute`` turns it
on for AdaPLE by default (p = 0.8, the middle of the paper's recommended 0.7-0.9).

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

import torch
from torch import Tensor

from drift.adapter import Model
from drift.data import EditCase
from drift.editors.base import Edit
from drift.editors.memit import compute_range_edit, preset as _range_preset
from drift.editors.pmet import PMETHParams
from drift.editors.spread import square_root


@dataclass(frozen=True)
class AdaPLEHParams(PMETHParams):
    """PMET's settings (layers, λ, steps, clamps); the solve is AdaPLE's."""


PRESETS: dict[str, AdaPLEHParams] = {
    # SmolLM2-135M: MEMIT's and PMET's layers 3-5 and λ (see drift.editors.memit).
    "smollm2-135m": AdaPLEHParams(),
    # The AdaPLE paper edits five layers ending at the causal-tracing peak, as MEMIT does.
    "EleutherAI/gpt-j-6B": AdaPLEHParams(layers=(3, 4, 5, 6, 7, 8), mom2_weight=15000.0),
    "meta-llama/Llama-2-7b-hf": AdaPLEHParams(layers=(4, 5, 6, 7, 8), weight_decay=1e-3, mom2_weight=15000.0),
    "EleutherAI/gpt-neox-20b": AdaPLEHParams(layers=(13, 14, 15, 16), mom2_weight=15000.0),
}


def preset(model: Model) -> AdaPLEHParams:
    return _range_preset(model, PRESETS, AdaPLEHParams())


def erase_old_delta(K: Tensor, R: Tensor, W: Tensor, C: Tensor, lam: float) -> Tensor:
    """ΔW ``[d_mlp, d_model]`` = (λC + 2KᵀK)⁻¹ Kᵀ (V₂ − 3 K W) with V₂ = K W + R: AdaPLE's solve for
    keys ``K [n, d_mlp]``, residuals ``R [n, d_model]``, current weight ``W [d_mlp, d_model]``
    and key second moment ``C [d_mlp, d_mlp]``. Float64 with a small ridge, as MEMIT's solve."""
    K64, W64 = K.double(), W.double()
    old = K64 @ W64  # V₁ [n, d_model]
    rhs = K64.T @ (old + R.double() - 3.0 * old)
    A = lam * C.double() + 2.0 * K64.T @ K64
    A = A + 1e-6 * A.diagonal().mean() * torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    return torch.linalg.solve(A, rhs).float()


def compute_adaple(model: Model, case: EditCase, hp: AdaPLEHParams | None = None) -> Edit:
    """Compute (never apply) the AdaPLE edit for ``case`` (without fusion). See the module docstring."""
    hp = hp or preset(model)
    last = max(hp.layers)
    return compute_range_edit(
        model, case, hp, opt_sites=[("attn_out", last), ("mlp_out", last)], value_site=("mlp_out", last),
        divisor=square_root, editor="adaple", solve=erase_old_delta,
    )
