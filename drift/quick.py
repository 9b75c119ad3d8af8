"""Editing in one line: :func:`edit` (one fact or a list of them) and :func:`edit_and_score` (the
standard metrics before and after, as a :class:`ScoreTable`).

Example:
    >>> import drift
    >>> e = drift.edit(model, "The Eiffel Tower is located in the city of", subject="Eiffel Tower",
    ...                target="Rome", target_true="Paris", layer=0, steps=2)  # tiny model: its layer 0
    >>> [(d.which, d.layer) for d in e.deltas]
    [('W_out', 0)]
    >>> with e.applied(model):                        # the weights carry the edit inside the block
    ...     p = model.target_prob("The Eiffel Tower is located in the city of", "Rome")
    >>> both = drift.edit(model, ["The Eiffel Tower is in", "The Louvre is in"],   # EasyEdit's lists
    ...                   subject=["Eiffel Tower", "Louvre"], target=["Rome", "Berlin"],
    ...                   target_true=["Paris", "Paris"], layer=0, steps=2)
    >>> both.info["cases"], [(d.which, d.layer) for d in both.deltas]   # one Edit applying both
    (2, [('W_out', 0)])
    >>> table = drift.edit_and_score(model, drift.load_cases("builtin", limit=2), layer=0, steps=2)
    >>> table.metrics[:2], len(table.rows) == 2 * len(table.metrics)
    (['ES', 'EM'], True)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from drift.editors.base import Edit, WeightDelta
from drift.model.adapter import Model
from drift.util import progress

if TYPE_CHECKING:
    from drift.data import EditCase

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


def _as_list(name: str, value: Any, n: int) -> list:
    """``value`` as a list of ``n``: a list or tuple of that length, or (a string, ``None``) the
    same value ``n`` times for ``target_true``."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{n} prompts but {len(value)} values of {name}: give one per prompt")
        return list(value)
    if name == "target_true" and value is None:
        return [None] * n
    raise ValueError(f"{name} must be a list of {n} (one per prompt) when prompts are a list, got {value!r}")


def _cases(
    model: Model, prompt: str | Sequence[str], subject, target, target_true
) -> tuple[list[EditCase], bool]:
    """The cases of :func:`edit`'s arguments, and whether one fact was given (not a list)."""
    from drift.data import EditCase

    if isinstance(prompt, str):
        for name, value in (("subject", subject), ("target", target), ("target_true", target_true)):
            if isinstance(value, (list, tuple)):
                raise ValueError(f"{name} is a list but prompt is one string: give prompts as a list too")
        truth = target_true if target_true is not None else greedy_answer(model, prompt)
        return [EditCase.simple(prompt, subject, target, truth)], True
    prompts = list(prompt)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompt must be a string or a non-empty list of strings")
    n = len(prompts)
    subjects, targets = _as_list("subject", subject, n), _as_list("target", target, n)
    truths = _as_list("target_true", target_true, n)
    cases = [
        EditCase.simple(p, s, t, tt if tt is not None else greedy_answer(model, p), case_id=f"custom-{i}")
        for i, (p, s, t, tt) in enumerate(zip(prompts, subjects, targets, truths))
    ]
    return cases, False


def combined(edits: Sequence[Edit], editor: str) -> Edit:
    """One :class:`Edit` applying all of ``edits``: the deltas of each weight added together
    (each edit was computed against the unedited model); ``info["edits"]`` keeps each one's."""
    sums: dict[tuple[str, int], Any] = {}
    for e in edits:
        for d in e.deltas:
            key = (d.which, d.layer)
            sums[key] = d.delta.clone() if key not in sums else sums[key] + d.delta
    info = {
        "editor": editor,
        "cases": len(edits),
        "edits": [e.info for e in edits],
        "seconds": sum(float(e.info.get("seconds", 0.0)) for e in edits),
    }
    return Edit([WeightDelta(w, l, delta) for (w, l), delta in sums.items()], info)


def edit(
    model: Model,
    prompt: str | Sequence[str],
    *,
    subject: str | Sequence[str],
    target: str | Sequence[str],
    target_true: str | Sequence[str] | None = None,
    editor: str = "rome",
    verbose: bool | None = None,
    **hparams,
) -> Edit:
    """Compute (never apply) ``editor``'s edit making ``prompt`` answer ``target``; returns an
    :class:`~drift.editors.base.Edit` (``with e.applied(model): ...`` or ``e.apply(model)``).

    Lists (EasyEdit's habit): ``prompt``, ``subject``, ``target`` (and ``target_true``) may be
    lists of one entry per fact. The facts' target vectors are optimised in one batch
    (``get_compute(editor).many``), each fact's update computed against the unedited model, and
    one Edit applies them all (their deltas added; ``info["edits"]`` holds each fact's record).
    Facts that share a weight's keys interfere when added; :mod:`drift.evaluation.sequential` computes each
    edit on the model carrying the previous ones instead.

    ``target_true``: the answer being replaced (default: the model's own greedy answer).
    ``verbose``: ``None`` (the default) shows a bar over the optimisation steps; ``True`` also
    logs the loss at every step; ``False`` prints nothing (:mod:`drift.util.progress`).
    ``hparams``: the editor's hyper-parameters to override (e.g. ``layer=``, ``steps=``,
    ``extra_terms=(SADR(1e-2),)``); a name the editor lacks is refused."""
    from drift.editors import get_compute

    compute = get_compute(editor, **hparams)
    with progress.verbose(verbose):
        cases, single = _cases(model, prompt, subject, target, target_true)
        for c in cases:
            log.info("%s: %r: %s -> %s (subject %r)", editor, c.prompt, c.o_true, c.o_edit, c.subject)
        start = time.perf_counter()
        edits = compute.many(model, cases)
        log.info("%s: %d edit(s) computed in %.1f s", editor, len(edits), time.perf_counter() - start)
    return edits[0] if single else combined(edits, editor)


class ScoreTable:
    """The metrics of some cases before and after their edits (:func:`edit_and_score`): one row
    per (case, metric), scores in percent (``drift.evaluation.metrics``), with a readable ``repr``,
    ``.to_frame()`` (a pandas DataFrame, where pandas is installed) and ``.mean()`` (each
    metric's mean over the cases, before and after).

    Example:
        >>> t = ScoreTable([{"case_id": "1", "subject": "Louvre", "metric": "ES", "before": 0.0,
        ...                  "after": 100.0}], editor="rome")
        >>> t
        ScoreTable(rome, 1 case; scores in %, magnitudes the mean P per token in %)
        case  subject  metric  before  after
        1     Louvre   ES         0.0  100.0
        >>> t.mean()
        {'ES': (0.0, 100.0)}
    """

    COLUMNS = ("case_id", "subject", "metric", "before", "after")

    def __init__(self, rows: Sequence[dict], *, editor: str, edits: Sequence[Edit] = ()):
        self.rows = [dict(r) for r in rows]
        self.editor = editor
        self.edits = list(edits)

    @property
    def metrics(self) -> list[str]:
        """The metrics in the table, in their first case's order."""
        return list(dict.fromkeys(r["metric"] for r in self.rows))

    @property
    def cases(self) -> list[str]:
        return list(dict.fromkeys(r["case_id"] for r in self.rows))

    def mean(self) -> dict[str, tuple[float, float]]:
        """``{metric: (mean before, mean after)}`` over the cases that have the metric."""
        out = {}
        for m in self.metrics:
            mine = [r for r in self.rows if r["metric"] == m]
            out[m] = (
                sum(r["before"] for r in mine) / len(mine),
                sum(r["after"] for r in mine) / len(mine),
            )
        return out

    def to_frame(self):
        """The rows as a pandas ``DataFrame`` (columns ``case_id, subject, metric, before,
        after``); pandas is not one of drift's dependencies, so install it to use this."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("ScoreTable.to_frame needs pandas: pip install pandas") from None
        return pd.DataFrame(self.rows, columns=list(self.COLUMNS))

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        n = len(self.cases)
        head = (
            f"ScoreTable({self.editor}, {n} case{'s' if n != 1 else ''}; scores in %, "
            "magnitudes the mean P per token in %)"
        )
        cells = [("case", "subject", "metric", "before", "after")]
        last = None
        for r in self.rows:
            first = r["case_id"] != last
            last = r["case_id"]
            subject = r["subject"] if len(r["subject"]) <= 24 else r["subject"][:23] + "…"
            cells.append(
                (
                    str(r["case_id"]) if first else "",
                    subject if first else "",
                    r["metric"],
                    f"{r['before']:.1f}",
                    f"{r['after']:.1f}",
                )
            )
        widths = [max(len(row[i]) for row in cells) for i in range(5)]
        align = [str.ljust, str.ljust, str.ljust, str.rjust, str.rjust]
        lines = ["  ".join(a(c, w) for a, c, w in zip(align, row, widths)).rstrip() for row in cells]
        return "\n".join([head, *lines])


def edit_and_score(
    model: Model,
    cases: EditCase | Sequence[EditCase] | str | Sequence[str],
    *,
    subject: str | Sequence[str] | None = None,
    target: str | Sequence[str] | None = None,
    target_true: str | Sequence[str] | None = None,
    editor: str = "rome",
    together: bool = False,
    scoring: str = "mean",
    verbose: bool | None = None,
    **hparams,
) -> ScoreTable:
    """Edit and score, as EasyEdit's ``editor.edit(...)`` does: the standard metrics
    (:func:`drift.evaluation.evaluate`, no generation) of each case on the unedited model and on the model
    carrying the edit, as a :class:`ScoreTable`. The model is left as it was.

    ``cases``: an :class:`~drift.data.EditCase` or a list of them (``drift.load_cases(...)``), or
    a prompt or a list of prompts with ``subject`` and ``target`` (and ``target_true``) as in
    :func:`edit` (such cases have ES/EM only). ``together=False``: each case is edited alone and
    scored (as ``evaluate`` does); ``True``: one edit of all cases (:func:`edit` with lists) and
    every case scored under it. ``scoring``: ``"mean"`` (per token, the default everywhere) or
    ``"product"``. ``hparams``: the editor's hyper-parameters (``layer=``, ``steps=`` …)."""
    from drift.data import EditCase
    from drift.editors import get_compute, get_editor
    from drift.evaluation.evaluate import evaluate
    from drift.evaluation.spec import EvalSpec

    if isinstance(cases, EditCase):
        cases = [cases]
    if isinstance(cases, str) or (
        isinstance(cases, (list, tuple)) and cases and all(isinstance(c, str) for c in cases)
    ):
        if subject is None or target is None:
            raise ValueError("prompts need subject= and target= (one per prompt for a list)")
        with progress.verbose(verbose):
            cases, _ = _cases(model, cases, subject, target, target_true)
    elif subject is not None or target is not None or target_true is not None:
        raise ValueError("subject=, target= and target_true= go with prompts; EditCases carry their own")
    cases = list(cases)
    if not cases or not all(isinstance(c, EditCase) for c in cases):
        raise ValueError("cases must be an EditCase, a list of them, a prompt or a list of prompts")
    spec = EvalSpec(fluency=False, scoring=scoring)
    before = evaluate(model, cases, spec=spec, progress=verbose)
    edits: list[Edit] = []
    if together:
        with progress.verbose(verbose):
            one = combined(get_compute(editor, **hparams).many(model, cases), editor)
        edits = [one]
        after = evaluate(model, cases, lambda m, c: one.applied(m), spec, progress=verbose)
    else:
        applied = get_editor(editor, **hparams)
        after = evaluate(model, cases, applied, spec, progress=verbose)
    rows = []
    for b, a in zip(before, after):
        for m, value in b["metrics"].items():
            if m.endswith("_k") or m not in a["metrics"]:
                continue
            rows.append(
                {
                    "case_id": b["case_id"],
                    "subject": b["subject"],
                    "metric": m,
                    "before": value,
                    "after": a["metrics"][m],
                }
            )
    return ScoreTable(rows, editor=editor, edits=edits)
