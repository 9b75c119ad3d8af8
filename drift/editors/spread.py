"""Spreading a target over a range of MLP layers: the update shared by MEMIT and PMET.

Given a target value z for some site of the last critical layer L (MEMIT: the residual stream
after L; PMET: the MLP output of L) at the subject's last token, the layers l of the range are
updated in ascending order. Before each layer, with the updates of the layers below it in place,
the MLP keys at the subject's last token of the ``n`` prefixed prompts and the site's current
value z_l at the bare prompt are read again. As the reference code's compute_ks does, the edit
has **one** key k ``[d_mlp]``, a weighted mean of the prompts' keys (MEMIT: the mean of the bare
prompt's key and the mean of the prefixed ones). The residual z − z_l is divided by a spread
divisor of the number of range layers still to write, from this one on (``L − l + 1`` for a
contiguous range; MEMIT even, PMET its square root), and
written into ``W_out`` by the least-squares update that keeps previously stored keys (second
moment C₀, weighted by λ) in place — in TransformerLens orientation (``out = k @ W_out``):

    ΔW = (λ C₀ + kᵀ k)⁻¹ kᵀ r,    k [1, d_mlp], r [1, d_model].

The partial updates are applied through :meth:`drift.editors.base.Edit.applied` only while the
next layer's keys are read; the model is unchanged when this returns. A ``fuse`` function
(AdaPLE's drop-and-rescale) is applied to each layer's delta *before* the next layer reads its
residual, as AdaPLE's Algorithm 1 does, so later layers make up for what was dropped.

Example:
    >>> tokens = torch.tensor([model.encode(case.prompt)])                  # the bare prompt only
    >>> lookup = torch.tensor(model.subject_positions(case.prompt, case.subject)[-1:])
    >>> z = model.residual(tokens, layer=1)[0, lookup[0]] + 0.1             # a target after layer 1
    >>> C = {l: torch.eye(model.cfg.d_mlp) for l in (0, 1)}
    >>> deltas = spread_update(model, tokens, lookup, [0, 1], ("resid_post", 1), z, C, 0.0, divisor=even)
    >>> [(d.layer, d.delta.shape) for d in deltas]
    [(0, torch.Size([64, 32])), (1, torch.Size([64, 32]))]
    >>> with Edit(deltas).applied(model):                       # λ = 0, no old key kept: z is reached
    ...     torch.allclose(model.residual(tokens, layer=1)[0, lookup[0]], z, atol=1e-5)
    True
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from drift.editors.base import Edit, WeightDelta
from drift.model.adapter import Model


def even(n_left: int) -> float:
    """MEMIT's spread: each layer takes an equal share of what is left."""
    return float(n_left)


def square_root(n_left: int) -> float:
    """PMET's spread: a larger share for each layer, R / √(L − l + 1)."""
    return math.sqrt(n_left)


def group_mean_weights(sizes: Sequence[int]) -> Tensor:
    """Row weights ``[sum(sizes)]`` that turn a stack of keys into the mean of group means (the
    reference's compute_ks: each context group counts equally, whatever its size)."""
    if not sizes or min(sizes) < 1:
        raise ValueError(f"every context group needs at least one prompt, got sizes {list(sizes)}")
    return torch.cat([torch.full((n,), 1.0 / (n * len(sizes))) for n in sizes])


def read_keys_and_value(
    model: Model, tokens: Tensor, lookup: Tensor, key_layer: int, site: tuple[str, int]
) -> tuple[Tensor, Tensor]:
    """MLP keys ``[n, d_mlp]`` at ``key_layer`` and the value ``[d_model]`` of ``site`` for row 0,
    both at the subject's last token (``lookup [n]``); one forward pass that stops at ``site``."""
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    box: dict[str, Tensor] = {}

    def grab_keys(act: Tensor, hook) -> None:
        box["keys"] = act[rows, lookup].detach().clone()

    with torch.no_grad():
        value = model.capture(tokens, site[0], site[1], [(model.hook_name("mlp_key", key_layer), grab_keys)])
    return box["keys"], value[0, lookup[0]].detach().clone()


def ridged_system(C: Tensor, lam: float, K: Tensor | None = None, k_weight: float = 1.0) -> Tensor:
    """``λC + k_weight·KᵀK`` ``[d_mlp, d_mlp]`` in float64 plus a tiny ridge (1e-6 × its mean
    diagonal; it guards a degenerate C only), built in one buffer: on GPT-J (d_mlp 16384) each
    extra float64 copy would be 2 GiB."""
    A = C.to(torch.float64, copy=True).mul_(lam)
    if K is not None:
        K64 = K.double()
        A.addmm_(K64.T, K64, alpha=k_weight)
    A.diagonal().add_(1e-6 * A.diagonal().mean())
    return A


def least_squares_delta(K: Tensor, R: Tensor, C: Tensor, lam: float) -> Tensor:
    """ΔW ``[d_mlp, d_model]`` minimising λ‖ΔW‖²_C₀ + ‖K ΔW − R‖²; ``K [n, d_mlp]``, ``R [n, d_model]``,
    ``C [d_mlp, d_mlp]``. Solved in float64 with a small ridge for stability."""
    A = ridged_system(C, lam, K)
    return torch.linalg.solve(A, K.double().T @ R.double()).float()


Solver = Callable[[Tensor, Tensor, Tensor, Tensor, float], Tensor]  # (K, R, W, C, λ) -> ΔW


def keep_old(K: Tensor, R: Tensor, W: Tensor, C: Tensor, lam: float) -> Tensor:
    """MEMIT's and PMET's solve: :func:`least_squares_delta` (``W``, the current weight, unused)."""
    return least_squares_delta(K, R, C, lam)


def spread_update(
    model: Model,
    tokens: Tensor,
    lookup: Tensor,
    layers: Sequence[int],
    site: tuple[str, int],
    target: Tensor,
    C: Mapping[int, Tensor],
    lam: float,
    divisor: Callable[[int], float] = even,
    solve: Solver = keep_old,
    *,
    key_weights: Tensor | None = None,
    fuse: Callable[[WeightDelta], WeightDelta] | None = None,
) -> list[WeightDelta]:
    """The per-layer ``W_out`` deltas that move ``site`` toward ``target [d_model]`` (see module
    docstring). ``tokens [n, pos]`` are the prefixed prompts (row 0 the bare one), ``lookup [n]``
    the subject's last token in each, ``key_weights [n]`` how their keys combine into the edit's
    one key (default: the plain mean). ``solve`` turns each layer's key and residual into its
    delta (default :func:`keep_old`; AdaPLE passes its own); ``fuse`` post-processes each
    layer's delta before the next layer is read."""
    last = site[1]
    layers = sorted(layers)
    if layers[-1] != last:
        raise ValueError(f"the target site's layer {last} must be the last of the edited layers {layers}")
    n = tokens.shape[0]
    weights = torch.full((n,), 1.0 / n) if key_weights is None else key_weights
    if weights.shape != (n,):
        raise ValueError(f"key_weights has shape {tuple(weights.shape)}, expected ({n},)")
    deltas: list[WeightDelta] = []
    for i, layer in enumerate(layers):
        with Edit(list(deltas)).applied(model):
            keys, current = read_keys_and_value(model, tokens, lookup, layer, site)
        K = (weights.to(keys.device, keys.dtype) @ keys)[None]  # [1, d_mlp], the edit's one key
        R = ((target - current) / divisor(len(layers) - i))[None]  # [1, d_model], layers still to write
        W = model.weight("W_out", layer).detach()
        # float32 whatever the model's dtype: applying rounds W + ΔW to it once (drift.editors.base)
        delta = WeightDelta("W_out", layer, solve(K, R, W, C[layer], lam).float())
        deltas.append(fuse(delta) if fuse is not None else delta)
    return deltas
