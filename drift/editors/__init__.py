"""Knowledge editors. Each computes weight deltas; ``drift.editors.base`` applies and removes them.

``EDITORS`` maps a command-line name to a function ``(model, case) -> context manager`` inside
which the model carries the edit (see ``drift.evaluate.EditFn``). Editors register here as they
land.
"""

from __future__ import annotations

from drift.evaluate import EditFn

EDITORS: dict[str, EditFn] = {}


def get_editor(name: str) -> EditFn | None:
    """The editor called ``name`` (``"none"``: no edit). Unknown names raise ``ValueError``."""
    if name == "none":
        return None
    try:
        return EDITORS[name]
    except KeyError:
        raise ValueError(f"unknown editor {name!r}; known editors: {['none', *sorted(EDITORS)]}") from None
