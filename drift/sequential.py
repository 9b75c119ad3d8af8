"""Sequential editing: edits stacked one after another, each computed on the already-edited model.

Unlike :func:`drift.evaluate.evaluate` with an editor (each case edited, evaluated, rolled back),
here the model keeps every edit: edit *n* is computed with edits 1..n−1 in place, optionally fused
sparsely first (``fuse``, e.g. :func:`drift.editors.fusion.drop_and_rescale`). At each checkpoint
all edits so far are evaluated on the model as it stands — the knowledge-attenuation measurement
of the AdaPLE paper §3. When the run ends, also through an exception or KeyboardInterrupt, every
edit is removed and the weights are bit-identical to before.

Example:
    >>> from drift.editors import get_compute
    >>> rows = sequential_edits(model, cases[:10], get_compute("memit"), checkpoints=(1, 5, 10))  # doctest: +SKIP
    >>> [(r["n_edits"], round(r["summary"]["ES"], 1)) for r in rows]                           # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tqdm.auto import tqdm

from drift.adapter import Model
from drift.data import EditCase
from drift.editors.base import Edit
from drift.evaluate import evaluate
from drift.metrics import summarise


def sequential_edits(
    model: Model,
    cases: Sequence[EditCase],
    compute: Callable[[Model, EditCase], Edit],
    *,
    checkpoints: Sequence[int] = (1, 10, 25, 50, 100),
    fuse: Callable[[Edit], Edit] | None = None,
    progress: bool = True,
    on_checkpoint: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Apply ``compute``'s edits for ``cases`` one after another without rolling back; after
    ``n`` edits for each ``n`` in ``checkpoints``, evaluate cases 1..n on the edited model.

    Returns one row per checkpoint: ``{"n_edits", "summary", "cases"}``. The model is restored
    exactly before this returns or raises."""
    handles = []
    rows: list[dict] = []
    marks = sorted({n for n in checkpoints if 1 <= n <= len(cases)})
    try:
        for i, case in enumerate(tqdm(cases, desc="sequential edits", disable=not progress), start=1):
            edit = compute(model, case)
            if fuse is not None:
                edit = fuse(edit)
            handles.append(edit.apply(model))
            if i in marks:
                results = evaluate(model, cases[:i], edit=None, fluency=False, progress=False)
                row = {"n_edits": i, "summary": summarise([r["metrics"] for r in results]), "cases": results}
                rows.append(row)
                if on_checkpoint is not None:
                    on_checkpoint(row)
    finally:
        for h in reversed(handles):
            h.remove()
    return rows
