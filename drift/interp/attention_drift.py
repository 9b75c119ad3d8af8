"""Attention drift (main paper §3.3, Table 2, App. D.3): how an edit moves the last token's attention.

For a prompt, the last token's attention row of every layer and head is read from the vanilla
model (W) and from the edited one (W*), one forward each, keeping only those rows
(``[layers, heads, tokens]``). From them:

- ``kl [layers, heads]``: KL(W ‖ W*) of each row — the drift;
- ``subject_gain [layers, heads]``: W*[s] − W[s], the extra attention to the edited subject's
  last token s;
- ``other_shift [layers, heads]``: ‖W*[∖s] − W[∖s]‖₁, the drift on every other token;
- hidden-state factors (App. D.3) at the subject's last token after the last edited layer: the
  edited state's norm, its L2 distance and cosine similarity to the vanilla state.

:func:`factors` reduces a :class:`Drift` over a layer range to the scalars that are correlated
with P(o_edit): the summed KL drift and factors 1–3 of Table 2.

Example:
    >>> from drift.editors.rome import ROMEHParams, compute_rome
    >>> from drift.interp.tracing import relation_prompt
    >>> edit = compute_rome(model, case, ROMEHParams(layer=0, steps=2))
    >>> d = measure(model, edit, relation_prompt(model, case), case.o_edit)
    >>> d.kl.shape                                                  # [layers, heads]; SmolLM2-135M: [30, 9]
    torch.Size([2, 4])
    >>> bool((d.kl[0] == 0).all())                                  # layer 0's attention runs before its MLP
    True
    >>> list(factors(d, range(2)))                                  # doctest: +NORMALIZE_WHITESPACE
    ['kl_drift', 'max_subject_gain', 'max_other_shift', 'sum_subject_gain',
     'hidden_norm', 'hidden_l2', 'hidden_cos']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from drift.editors.base import Edit
from drift.interp.tracing import Prompt
from drift.model.adapter import Model
from drift.model.sites import Site
from drift.util.reprs import fields_repr

EPS = 1e-12


@dataclass
class Drift:
    kl: Tensor  # [layers, heads]
    subject_gain: Tensor  # [layers, heads]
    other_shift: Tensor  # [layers, heads]
    vanilla_rows: Tensor  # [layers, heads, tokens]
    edited_rows: Tensor  # [layers, heads, tokens]
    hidden_norm: float
    hidden_l2: float
    hidden_cos: float
    p_edit: float  # P(o_edit) of the edited model on this prompt (all tokens, per ``scoring``)
    p_true: float  # P(the prompt's right answer), the same way

    __repr__ = fields_repr


@torch.no_grad()
def last_rows_and_hidden(model: Model, tokens: Tensor, pos: int, hidden_layer: int) -> tuple[Tensor, Tensor]:
    """Last-token attention rows ``[layers, heads, tokens]`` and the residual after
    ``hidden_layer`` at ``pos`` ``[d_model]``, in one forward pass, as float32 on the CPU."""
    L = model.cfg.n_layers
    patterns = [Site("pattern", l) for l in range(L)]
    cache = model.record(tokens, [*patterns, Site("resid_post", hidden_layer)])
    rows = torch.stack([cache[s][0, :, -1].float().cpu() for s in patterns])  # each [heads, tokens]
    return rows, cache["resid_post", hidden_layer][0, pos].float().cpu()


def measure(model: Model, edit: Edit, p: Prompt, target_edit: str, scoring: str = "mean") -> Drift:
    """Drift of ``edit`` on prompt ``p`` (see the module docstring); ``p_edit`` and ``p_true``
    scored per token as the reference evaluation does (``scoring="mean"``: exp of the mean
    log-probability per target token) or as the product of the tokens' probabilities."""
    hidden_layer = max(d.layer for d in edit.deltas)
    W, h = last_rows_and_hidden(model, p.tokens, p.subject_last, hidden_layer)
    with edit.applied(model):
        W_star, h_star = last_rows_and_hidden(model, p.tokens, p.subject_last, hidden_layer)
        p_edit = model.target_prob(p.text, target_edit, scoring)
        p_true = model.target_prob(p.text, p.answer, scoring)
    kl = (W * ((W + EPS).log() - (W_star + EPS).log())).sum(-1)
    s = p.subject_last
    diff = W_star - W
    other = torch.cat([diff[..., :s], diff[..., s + 1 :]], -1).abs().sum(-1)
    return Drift(
        kl=kl,
        subject_gain=diff[..., s],
        other_shift=other,
        vanilla_rows=W,
        edited_rows=W_star,
        hidden_norm=float(h_star.norm()),
        hidden_l2=float((h_star - h).norm()),
        hidden_cos=float(torch.nn.functional.cosine_similarity(h_star, h, dim=0)),
        p_edit=p_edit,
        p_true=p_true,
    )


def factors(d: Drift, layers: Sequence[int]) -> dict[str, float]:
    """The scalars of Fig. 4, Table 2 and Table 4 over ``layers``."""
    ls = list(layers)
    return {
        "kl_drift": float(d.kl[ls].sum()),
        "max_subject_gain": float(d.subject_gain[ls].max(-1).values.sum()),  # Table 2, factor 1
        "max_other_shift": float(d.other_shift[ls].max(-1).values.sum()),  # factor 2
        "sum_subject_gain": float(d.subject_gain[ls].sum()),  # factor 3
        "hidden_norm": d.hidden_norm,
        "hidden_l2": d.hidden_l2,
        "hidden_cos": d.hidden_cos,
    }
