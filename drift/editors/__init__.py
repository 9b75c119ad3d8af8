"""Knowledge editors. Each computes weight deltas; ``drift.editors.base`` applies and removes them.

``EDITORS`` maps a command-line name to a function ``(model, case) -> context manager`` inside
which the model carries the edit (see ``drift.evaluate.EditFn``); the edit is removed exactly
when the block ends.

Example:
    >>> edit_fn = get_editor("rome")
    >>> with edit_fn(model, case) as edit:                       # doctest: +SKIP
    ...     model.target_prob(case.prompt, case.o_edit)
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from drift.evaluate import EditFn


def _rome(**overrides) -> EditFn:
    @contextlib.contextmanager
    def run(model, case):
        from drift.editors.rome import compute_rome, preset

        edit = compute_rome(model, case, replace(preset(model), **overrides))
        with edit.applied(model):
            yield edit

    return run


EDITORS: dict[str, EditFn] = {
    "rome": _rome(),
    "rome-awd": _rome(block_attention_grad=True),
}


def get_editor(name: str) -> EditFn | None:
    """The editor called ``name`` (``"none"``: no edit). Unknown names raise ``ValueError``."""
    if name == "none":
        return None
    try:
        return EDITORS[name]
    except KeyError:
        raise ValueError(f"unknown editor {name!r}; known editors: {['none', *sorted(EDITORS)]}") from None
