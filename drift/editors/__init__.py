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
import importlib
from dataclasses import replace
from drift.evaluate import EditFn


def _editor(module: str, compute: str, **overrides) -> EditFn:
    """An EditFn running ``drift.editors.<module>.<compute>`` with the model's preset (plus
    ``overrides``), the edit applied inside the block."""

    @contextlib.contextmanager
    def run(model, case):
        mod = importlib.import_module(f"drift.editors.{module}")
        hp = replace(mod.preset(model), **overrides)
        edit = getattr(mod, compute)(model, case, hp)
        with edit.applied(model):
            yield edit

    return run


EDITORS: dict[str, EditFn] = {
    "rome": _editor("rome", "compute_rome"),
    "rome-awd": _editor("rome", "compute_rome", block_attention_grad=True),
    "memit": _editor("memit", "compute_memit"),
    "pmet": _editor("pmet", "compute_pmet"),
}


def get_editor(name: str) -> EditFn | None:
    """The editor called ``name`` (``"none"``: no edit). Unknown names raise ``ValueError``."""
    if name == "none":
        return None
    try:
        return EDITORS[name]
    except KeyError:
        raise ValueError(f"unknown editor {name!r}; known editors: {['none', *sorted(EDITORS)]}") from None
