"""Where an edit contaminates the forward pass: the main paper's §3.2, §3.4 and App. D.1–D.2.

Three specialisations of :func:`drift.interp.patching.patch_scan`, differing only in the states they build
and in which run is the source:

- :func:`contaminating_substitution` — the *vanilla* model with one module kind's output
  (``"mlp"``, ``"attn"``, or ``"layer"`` = the block's output, the whole hidden state after it)
  replaced by the *edited* model's, at token t, for a window of k layers centred on layer l;
  every (l, t).
- :func:`attention_patching` — the *edited* model with the *vanilla* attention patterns (every
  head, whole pattern) in a window of k layers starting at each layer.
- :func:`score_patching` — the *edited* model with the *vanilla* pre-softmax score from the last
  token to token t (every head), for a window of k layers centred on layer l; every (l, t).

Probabilities are those of the first token of the prompt's right answer (o_true for DNS, the
relation's own answer for RS) and of o_edit at the last position (as in
causal tracing). Results are plain objects with tensors and token labels; ``drift.plots`` draws
them and :func:`align` averages them over cases with tokens grouped as the paper does.

Example:
    >>> from drift.editors.rome import ROMEHParams, compute_rome
    >>> edit = compute_rome(model, case, ROMEHParams(layer=0, steps=2))
    >>> p = distracting_prompt(model, case)
    >>> tr = contaminating_substitution(model, edit, p, "attn", window=1)
    >>> tr.probs.shape == (model.cfg.n_layers, len(p.labels), 2)        # [layers, tokens, (o_true, o_edit)]
    True
    >>> torch.allclose(tr.probs[0], tr.vanilla.expand_as(tr.probs[0]))  # layer 0's attention: before the edit
    True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor

from drift.data import EditCase
from drift.editors.base import Edit
from drift.interp.patching import State, Write, patch_scan, record
from drift.model.adapter import Model
from drift.model.sites import Site
from drift.util import progress
from drift.util.reprs import fields_repr

log = logging.getLogger(__name__)

# Module kind -> the site kinds whose outputs substitution copies.
KINDS: dict[str, tuple[str, ...]] = {
    "mlp": ("mlp_out",),
    "attn": ("attn_out",),
    "layer": ("resid_post",),  # the block's output: the hidden state, residual included
}

# Token groups for averaging over cases (§3.2's aligned axes). "test prompt" exists only for
# distracting prompts: the neighbour's prompt after the edit sentence.
GROUPS = [
    "before subject",
    "subject first",
    "subject middle",
    "subject last",
    "after subject",
    "test prompt",
    "last token",
]


def centred(layer: int, k: int, n_layers: int) -> range:
    """The window of ``k`` layers centred on ``layer``, clipped to the model."""
    return range(max(0, layer - k // 2), min(n_layers, layer - (-k // 2)))


def starting(layer: int, k: int, n_layers: int) -> range:
    """The window of ``k`` layers starting at ``layer``, clipped to the model."""
    return range(layer, min(n_layers, layer + k))


@dataclass
class Prompt:
    """A test prompt, its tokens and labels, and where the edited subject sits in it."""

    text: str
    tokens: Tensor  # [1, pos]
    labels: list[str]  # decoded tokens
    groups: list[str]  # one of GROUPS per token
    subject_last: int
    answer: str  # the right answer to this prompt (o_true, or the relation's own answer for RS)
    read: Tensor  # [2] first tokens of the right answer and of o_edit

    __repr__ = fields_repr


def prepare(model: Model, case: EditCase, text: str, answer: str, test_start: int | None = None) -> Prompt:
    """Tokenise ``text`` and label its tokens; ``test_start`` is the character where a distracting
    prompt's test prompt begins (None for prompts about the subject itself)."""
    ids = model.encode(text)
    head = text[:test_start] if test_start else text
    subj = model.subject_positions(head, case.subject, start=case.subject_at(head))
    test = set(model.span_positions(text, test_start, len(text))) if test_start else set()
    groups = []
    for i in range(len(ids)):
        if i == len(ids) - 1:
            groups.append("last token")
        elif i in test:
            groups.append("test prompt")
        elif i < subj[0]:
            groups.append("before subject")
        elif i == subj[-1]:
            groups.append("subject last")
        elif i == subj[0]:
            groups.append("subject first")
        elif i in subj:
            groups.append("subject middle")
        else:
            groups.append("after subject")
    read = torch.tensor([model.encode_target(answer)[0], model.encode_target(case.o_edit)[0]])
    labels = [model.tokenizer.decode([t]) for t in ids]
    return Prompt(text, torch.tensor([ids], device=model.device), labels, groups, subj[-1], answer, read)


def distracting_prompt(model: Model, case: EditCase, index: int = 0) -> Prompt:
    """The DNS prompt "(s, r, o_edit). " ⊕ neighbour prompt ``index``."""
    probe = case.distracting[index]
    return prepare(model, case, probe.prompt, probe.answer, test_start=len(case.edit_sentence) + 1)


def relation_prompt(model: Model, case: EditCase, index: int = 0) -> Prompt:
    """The RS prompt: the edited subject with another relation."""
    probe = case.relation[index]
    return prepare(model, case, probe.prompt, probe.answer)


@dataclass
class PatchScan:
    """Probabilities of (o_true, o_edit) over a grid of patch states, with the references."""

    analysis: str  # "substitution:mlp", "attention", "score", ...
    probs: Tensor  # [layers, tokens, 2] or [layers, 2]
    vanilla: Tensor  # [2] unedited model
    edited: Tensor  # [2] edited model
    prompt: Prompt
    window: int
    info: dict = field(default_factory=dict)

    __repr__ = fields_repr

    @property
    def receiver(self) -> Tensor:
        """The unpatched receiving model's probabilities (vanilla for substitution, else edited)."""
        return self.vanilla if self.analysis.startswith("substitution") else self.edited

    @property
    def effect(self) -> Tensor:
        """Change from the receiver: the tracing effect (§3.2)."""
        return self.probs - self.receiver


def _references(model: Model, edit: Edit, p: Prompt) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        vanilla = model.forward(p.tokens)[0, -1].float().softmax(-1)[p.read.to(model.device)].cpu()
        with edit.applied(model):
            edited = model.forward(p.tokens)[0, -1].float().softmax(-1)[p.read.to(model.device)].cpu()
    return vanilla, edited


def contaminating_substitution(
    model: Model,
    edit: Edit,
    p: Prompt,
    kind: str,
    window: int = 6,
    *,
    verbose: bool | None = None,
    **scan_kw,
) -> PatchScan:
    """The vanilla model with ``kind``'s outputs from the edited model, every (layer, token).
    ``verbose``: a bar over the patched runs (:mod:`drift.util.progress`); other keywords go to
    :func:`drift.interp.patching.patch_scan`."""
    if kind not in KINDS:
        raise ValueError(f"unknown module kind {kind!r}; known: {sorted(KINDS)}")
    with progress.verbose(verbose):
        return _substitution(model, edit, p, kind, window, **scan_kw)


def _substitution(model: Model, edit: Edit, p: Prompt, kind: str, window: int, **scan_kw) -> PatchScan:
    L, T = model.cfg.n_layers, p.tokens.shape[1]
    log.info("contaminating substitution (%s, window %d): %d layers x %d tokens", kind, window, L, T)
    sites = KINDS[kind]
    with edit.applied(model):
        source = record(model, p.tokens, [Site(s, l) for s in sites for l in range(L)])
    states: list[State] = [
        tuple(Write(s, j, (t,)) for j in centred(l, window, L) for s in sites)
        for l in range(L)
        for t in range(T)
    ]
    probs = patch_scan(model, p.tokens, states, source, p.read, **scan_kw).view(L, T, 2)
    vanilla, edited = _references(model, edit, p)
    return PatchScan(f"substitution:{kind}", probs, vanilla, edited, p, window)


def attention_patching(
    model: Model, edit: Edit, p: Prompt, window: int = 10, *, verbose: bool | None = None, **scan_kw
) -> PatchScan:
    """The edited model with vanilla attention patterns in ``window`` layers starting at each
    layer. ``verbose`` and other keywords as in :func:`contaminating_substitution`."""
    with progress.verbose(verbose):
        return _attention_patching(model, edit, p, window, **scan_kw)


def _attention_patching(model: Model, edit: Edit, p: Prompt, window: int, **scan_kw) -> PatchScan:
    L = model.cfg.n_layers
    log.info("attention-weight patching (window %d): %d layers", window, L)
    source = record(model, p.tokens, [Site("pattern", l) for l in range(L)])
    states = [tuple(Write("pattern", j) for j in starting(l, window, L)) for l in range(L)]
    with edit.applied(model):
        probs = patch_scan(model, p.tokens, states, source, p.read, **scan_kw)
    vanilla, edited = _references(model, edit, p)
    return PatchScan("attention", probs, vanilla, edited, p, window)


def score_patching(
    model: Model, edit: Edit, p: Prompt, window: int = 10, *, verbose: bool | None = None, **scan_kw
) -> PatchScan:
    """The edited model with the vanilla score from the last token to token t, every (layer,
    t). ``verbose`` and other keywords as in :func:`contaminating_substitution`."""
    with progress.verbose(verbose):
        return _score_patching(model, edit, p, window, **scan_kw)


def _score_patching(model: Model, edit: Edit, p: Prompt, window: int, **scan_kw) -> PatchScan:
    L, T = model.cfg.n_layers, p.tokens.shape[1]
    log.info("score patching (window %d): %d layers x %d tokens", window, L, T)
    source = record(model, p.tokens, [Site("scores", l) for l in range(L)])
    states = [
        tuple(Write("scores", j, (slice(None), T - 1, t)) for j in centred(l, window, L))
        for l in range(L)
        for t in range(T)
    ]
    with edit.applied(model):
        probs = patch_scan(model, p.tokens, states, source, p.read, **scan_kw).view(L, T, 2)
    vanilla, edited = _references(model, edit, p)
    return PatchScan("score", probs, vanilla, edited, p, window)


def align(scans: list[PatchScan]) -> tuple[Tensor, list[str]]:
    """Average ``[layers, tokens, 2]`` effects over cases with tokens grouped by :data:`GROUPS`:
    returns ``[layers, groups, 2]`` (groups present in at least one prompt) and the group names."""
    present = [g for g in GROUPS if any(g in s.prompt.groups for s in scans)]
    total = torch.zeros(scans[0].probs.shape[0], len(present), 2)
    count = torch.zeros(len(present))
    for s in scans:
        for gi, g in enumerate(present):
            idx = [i for i, x in enumerate(s.prompt.groups) if x == g]
            if idx:
                total[:, gi] += s.effect[:, idx].mean(1)
                count[gi] += 1
    return total / count.clamp(min=1)[None, :, None], present
