"""Editing one fact in one line: :func:`edit`.

Example:
    >>> import drift
    >>> e = drift.edit(model, "The Eiffel Tower is located in the city of", subject="Eiffel Tower",
    ...                target="Rome", target_true="Paris", layer=0, steps=2)  # tiny model: its layer 0
    >>> [(d.which, d.layer) for d in e.deltas]
    [('mlp_out', 0)]
    >>> with e.applied(model):                        # the weights carry the edit inside the block
    ...     p = model.target_prob("The Eiffel Tower is located in the city of", "Rome")
"""

from __future__ import annotations

import logging
import time

from drift.editors.base import Edit
from drift.model.adapter import Model
from drift.util import progress

log = logging.getLogger(__name__)


def greedy_answer(model: Model, prompt: str, max_tokens: int = 4) -> str:
    """The model's own answer to ``prompt``: its greedy continuation, cut at the end of the first
    word (what ``target_true`` defaults to)."""
    import torch

    ids = model.encode(prompt)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_tokens):
            logits = model.forward(torch.tensor([ids + out], device=model.device))
            nxt = int(logits[0, -1].argmax())
            piece = model.tokenizer.decode([nxt])
            if out and (piece[:1].isspace() or not piece.strip() or not piece[:1].isalnum()):
                break
            out.append(nxt)
    word = model.tokenizer.decode(out).strip()
    if not word:
        raise ValueError(f"the model's greedy answer to {prompt!r} is empty; pass target_true")
    return word


def edit(
    model: Model,
    prompt: str,
    *,
    subject: str,
    target: str,
    target_true: str | None = None,
    editor: str = "rome",
    verbose: bool | None = None,
    **hparams,
) -> Edit:
    """Compute (never apply) ``editor``'s edit making ``prompt`` answer ``target``; returns an
    :class:`~drift.editors.base.Edit` (``with e.applied(model): ...`` or ``e.apply(model)``).

    ``target_true``: the answer being replaced (default: the model's own greedy answer).
    ``verbose``: print the loss at every optimisation step and a bar while key statistics are
    computed (:mod:`drift.util.progress`; silent by default).
    ``hparams``: the editor's hyper-parameters to override (e.g. ``layer=``, ``steps=``,
    ``extra_terms=(SADR(1e-2),)``); a name the editor lacks is refused."""
    from drift.data import EditCase
    from drift.editors import get_compute

    compute = get_compute(editor, **hparams)
    with progress.verbose(verbose):
        if target_true is None:
            target_true = greedy_answer(model, prompt)
        log.info("%s: %r: %s -> %s (subject %r)", editor, prompt, target_true, target, subject)
        start = time.perf_counter()
        result = compute(model, EditCase.simple(prompt, subject, target, target_true))
        log.info("%s edit computed in %.1f s", editor, time.perf_counter() - start)
    return result
