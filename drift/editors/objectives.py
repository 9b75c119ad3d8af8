"""The editors' objective as a list of loss terms.

The target-vector optimisation (``drift.editors.target``) sums ``[term(step) for term in terms]``;
a new term (SADR) is one more object in the list, never an edit to the loop. A term may also ask
for hooks on the forward pass (to read attention patterns, say) through ``hooks(batch)``.

- :class:`NLL`: −mean over rewriting prompts of the mean log-probability of o_edit's tokens.
- :class:`EssenceKL`: ω · KL(P_vanilla ‖ P_edited) of the next token after "{subject} is a".
- :class:`WeightDecay`: λ · Σ ‖δ‖² / ‖v₀‖², keeping the added vector small relative to the
  site's original output.

Example:
    >>> terms = default_terms(kl_factor=0.0625, weight_decay=0.5)
    >>> [t.name for t in terms]
    ['nll', 'kl', 'weight_decay']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from torch import Tensor

from drift.adapter import Hook


@dataclass
class EditBatch:
    """What a loss term may need to know about the optimisation batch (fixed across steps)."""

    tokens: Tensor  # [batch, pos] rewriting sequences, then the KL prompts
    lookup: Tensor  # [batch] position of the subject's last token in each sequence
    query: Tensor  # [batch] position that predicts the first target token (rewriting rows)
    n_rewrite: int  # rows [0, n_rewrite) are rewriting sequences, the rest KL prompts
    start_layer: int


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


class LossTerm:
    """A term of the objective: ``hooks`` (optional) and ``__call__(step) -> scalar``."""

    name = "term"

    def hooks(self, batch: EditBatch, extras: dict) -> Sequence[Hook]:
        return ()

    def __call__(self, step: Step) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class NLL(LossTerm):
    name = "nll"

    def __call__(self, step: Step) -> Tensor:
        return -step.target_logp.mean()


@dataclass
class EssenceKL(LossTerm):
    weight: float = 0.0625
    name = "kl"

    def __call__(self, step: Step) -> Tensor:
        p = step.vanilla_kl_logp.exp()
        return self.weight * (p * (step.vanilla_kl_logp - step.kl_logp)).sum(-1).mean()


@dataclass
class WeightDecay(LossTerm):
    weight: float = 0.5
    name = "weight_decay"

    def __call__(self, step: Step) -> Tensor:
        return self.weight * sum(d.norm() ** 2 / step.v0_norms[k] ** 2 for k, d in step.deltas.items())


def default_terms(kl_factor: float, weight_decay: float) -> list[LossTerm]:
    return [NLL(), EssenceKL(kl_factor), WeightDecay(weight_decay)]
