"""The editors' objective as a list of loss terms.

The target-vector optimisation (``drift.editors.target``) sums ``[term(step) for term in terms]``;
a new term (SADR) is one more object in the list, never an edit to the loop. A term may also ask
for hooks on the forward pass (to read attention patterns, say) through ``hooks(batch)``.

Each term is written as the papers' reference code computes it (``docs/fidelity.md``):

- :class:`NLL`: −mean over rewriting prompts of the mean log-probability of o_edit's tokens
  (× 0.1 while every target token is already the argmax, under PMET's schedule).
- :class:`EssenceKL`: ω · KL(P_edited ‖ P_vanilla) of the distribution read at the subject's last
  token of "{subject} is a" (the reference's ``kl_div(init, current, log_target=True)``).
- :class:`WeightDecay`: λ · Σ ‖δ‖ / ‖v₀‖² (the reference's form; ``squared=True`` gives
  λ · Σ ‖δ‖² / ‖v₀‖², the form left commented out in the reference code).

Example:
    >>> terms = default_terms(kl_factor=0.0625, weight_decay=0.5)
    >>> [t.name for t in terms]
    ['nll', 'kl', 'weight_decay']
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from drift.model.adapter import Hook


@dataclass
class EditBatch:
    """What a loss term may need to know about the optimisation batch (fixed across steps)."""

    tokens: Tensor  # [batch, pos] rewriting sequences, then the KL prompts
    lookup: Tensor  # [batch] position of the subject's last token in each sequence
    query: Tensor  # [batch] position that predicts the first target token (rewriting rows)
    n_rewrite: int  # rows [0, n_rewrite) are rewriting sequences, the rest KL prompts
    start_layer: int
    lengths: Tensor | None = None  # [batch] real tokens per row (the rest is padding)
    # Columns before ``offset`` are held as keys and values (drift.model.adapter.Prefix) and not run:
    # an activation's position is its column − offset; attention patterns keep every column.
    offset: int = 0
    # Each row's index in the activations a term's hooks see (None: row b is activation row b);
    # set when several cases' rows share one forward pass (drift.editors.target.optimise_many).
    rows: Tensor | None = None

    def act_rows(self) -> Tensor:
        """``[batch]`` each row's index in the activations of the forward pass."""
        if self.rows is not None:
            return self.rows
        return torch.arange(self.tokens.shape[0], device=self.tokens.device)


@dataclass
class Step:
    """One forward pass of the optimisation, as seen by the loss terms."""

    step: int
    target_logp: Tensor  # [n_rewrite] mean log P of o_edit's tokens per rewriting sequence
    kl_logp: Tensor  # [n_kl, d_vocab] log-probs at the KL prompts' last position
    vanilla_kl_logp: Tensor  # [n_kl, d_vocab] the same for the unedited model (no grad)
    deltas: dict[str, Tensor]  # site key -> [d_model] vector being optimised
    v0_norms: dict[str, Tensor]  # site key -> ‖original output at the subject's last token‖
    extras: dict = field(default_factory=dict)  # "model", "batch", and what terms' hooks recorded this step
    nll_scale: float = 1.0  # PMET's schedule: 0.1 after a step where every target token was the argmax


class LossTerm:
    """A term of the objective: ``hooks`` (optional) and ``__call__(step) -> scalar``."""

    name = "term"

    def hooks(self, batch: EditBatch, extras: dict) -> Sequence[Hook]:
        return ()

    def fresh(self) -> "LossTerm":
        """A copy with the same settings for another case optimised in the same batch (a term
        that keeps per-edit state, like SADR's vanilla rows, must not share it between cases)."""
        return copy.copy(self)

    def __call__(self, step: Step) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class NLL(LossTerm):
    name = "nll"

    def __call__(self, step: Step) -> Tensor:
        return -step.nll_scale * step.target_logp.mean()


@dataclass
class EssenceKL(LossTerm):
    weight: float = 0.0625
    name = "kl"

    def __call__(self, step: Step) -> Tensor:
        q = step.kl_logp.exp()  # KL(P_edited ‖ P_vanilla), mean over KL prompts
        return self.weight * (q * (step.kl_logp - step.vanilla_kl_logp)).sum(-1).mean()


@dataclass
class WeightDecay(LossTerm):
    weight: float = 0.5
    squared: bool = False  # False: λ‖δ‖/‖v₀‖² (reference code); True: λ‖δ‖²/‖v₀‖²
    name = "weight_decay"

    def __call__(self, step: Step) -> Tensor:
        power = 2 if self.squared else 1
        return self.weight * sum(d.norm() ** power / step.v0_norms[k] ** 2 for k, d in step.deltas.items())


def default_terms(kl_factor: float, weight_decay: float, *, squared_decay: bool = False) -> list[LossTerm]:
    return [NLL(), EssenceKL(kl_factor), WeightDecay(weight_decay, squared_decay)]
