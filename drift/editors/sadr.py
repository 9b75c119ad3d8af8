"""SADR, Selective Attention Drift Restriction (main paper §4, Eq. 2): one more loss term.

While an editor optimises its target vector, SADR reads the attention row of the position that
predicts the first target token in every context-prefixed rewriting prompt, for each layer the
optimisation runs through and each head (``[n_prompts, heads, tokens]`` per layer — never the
full patterns). The rows at the first step (δ = 0) are the vanilla model's. At every later step
a head is *restrained* when its attention to the subject's last token exceeds the largest
vanilla attention to that token among the heads of its layer (``heads="selective"``), or always
(``heads="all"``, the ablation of §6.1); the penalty is

    γ · mean over prompts of Σ_layers Σ_restrained heads KL(W_vanilla ‖ W_edited),

γ on the paper's scale, multiplying the KL itself (the reference code's ``attn_W_loss_weight``
× 1e-4: its weight 100 for ROME on GPT-J is the paper's γ = 1e-2). As there, 1e-8 is added to
both attention rows before the KL. :func:`paper_setting` gives the paper's γ and steps per editor and
model.

Because it is a :class:`~drift.editors.objectives.LossTerm`, it plugs into every editor through
``extra_terms``:

Example:
    >>> from dataclasses import replace
    >>> from drift.editors.rome import ROMEHParams, compute_rome
    >>> hp = ROMEHParams(extra_terms=(SADR(gamma=1e-2),), steps=80)     # the paper's ROME setting
    >>> edit = compute_rome(model, case, replace(hp, layer=0, steps=3))  # on the tiny model: 3 steps
    >>> list(edit.info["losses"][0])
    ['nll', 'kl', 'weight_decay', 'sadr', 'p_target']
    >>> edit.info["losses"][0]["sadr"]                                   # δ = 0: no drift yet
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from drift.adapter import Hook
from drift.editors.objectives import EditBatch, LossTerm, Step
from drift.editors.presets import SADR_FALLBACK, SADR_SETTINGS, sadr_setting

EPS = 1e-8  # added to both attention rows, as the reference code does (float32)

# GPT-J's row of the main paper's SADR runs (App. C.2 and its scripts): γ and steps per editor.
# Every model's: drift.editors.presets.SADR_SETTINGS.
PAPER_SETTINGS: dict[str, dict] = {
    e: dict(SADR_SETTINGS[e][SADR_FALLBACK]) for e in ("rome", "memit", "pmet")
}


def paper_setting(editor: str, model=None) -> dict:
    """``{"gamma": γ, "steps": n}`` of the main paper's SADR run for ``editor`` (ROME-AWD: ROME's)
    on ``model`` (a name, folder or model; ``None`` or one without a row: GPT-J's; SmolLM2-135M's
    ROME: the validation grid's choice, γ 4e-2 at 20 steps; see
    :func:`drift.editors.presets.sadr_setting`)."""
    return sadr_setting(editor, model)


@dataclass(eq=False)
class SADR(LossTerm):
    gamma: float = 1e-2
    heads: str = "selective"  # or "all"
    name = "sadr"
    _vanilla: dict = field(default_factory=dict, repr=False)
    _layers: tuple = field(default=(), repr=False)
    # After each step, per layer: "kl" [heads] (the KL of each head's row, mean over prompts,
    # restrained or not) and "restrained" [heads] (the fraction of prompts where it was
    # restrained): what the last step of an edit saw, for analysis.
    report: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.heads not in ("selective", "all"):
            raise ValueError(f"SADR heads must be 'selective' or 'all', got {self.heads!r}")
        if not self.gamma >= 0:
            raise ValueError(f"SADR gamma must be ≥ 0, got {self.gamma}")

    def hooks(self, batch: EditBatch, extras: dict) -> Sequence[Hook]:
        model = extras["model"]
        n = batch.n_rewrite
        rows = batch.act_rows()[:n]  # this case's rewriting rows in the activations
        q = batch.query[:n] - batch.offset  # query rows of the columns that run
        self._layers = tuple(range(batch.start_layer, model.cfg.n_layers))

        def keep(layer: int):
            def fn(act: Tensor, hook) -> None:  # [batch, heads, q, k]
                extras[("sadr", layer)] = act[rows, :, q, :].float()  # [n, heads, k], keeps the graph

            return fn

        return [(model.hook_name("pattern", l), keep(l)) for l in self._layers]

    def fresh(self) -> "SADR":
        return SADR(self.gamma, self.heads)

    def __call__(self, step: Step) -> Tensor:
        batch: EditBatch = step.extras["batch"]
        n = batch.n_rewrite
        rows = torch.arange(n, device=batch.tokens.device)
        subj = batch.lookup[:n]
        if step.step == 0:  # δ = 0: the unedited model's rows on this very batch
            self._vanilla = {l: step.extras[("sadr", l)].detach() for l in self._layers}
        total = torch.zeros((), device=batch.tokens.device)
        report = {}
        for l in self._layers:
            cur, van = step.extras[("sadr", l)], self._vanilla[l]  # [n, heads, k]
            p, q = van + EPS, cur + EPS
            kl = (p * (p.log() - q.log())).sum(-1)  # [n, heads]
            mask = torch.ones_like(kl)
            if self.heads == "selective":
                to_subj = cur[rows, :, subj]  # [n, heads]
                limit = van[rows, :, subj].max(-1, keepdim=True).values  # [n, 1]
                mask = (to_subj > limit).detach().float()
            report[l] = {"kl": kl.detach().mean(0).cpu(), "restrained": mask.mean(0).cpu()}
            total = total + (kl * mask).sum(-1).mean()
        self.report = report
        return self.gamma * total
