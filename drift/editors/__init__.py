"""Knowledge editors. Each computes weight deltas; ``drift.editors.base`` applies and removes them.

``COMPUTE`` maps a command-line name to a function ``(model, case, **overrides) -> Edit`` that
computes the edit with the model's preset (the model unchanged); ``EDITORS`` wraps each as
``(model, case) -> context manager`` inside which the model carries the edit (see
``drift.evaluate.EditFn``), removed exactly when the block ends.

Example:
    >>> edit_fn = get_editor("rome")
    >>> with edit_fn(model, case) as edit:                       # doctest: +SKIP
    ...     model.target_prob(case.prompt, case.o_edit)
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from dataclasses import replace

from drift.editors.base import Edit
from drift.evaluate import EditFn


ComputeFn = Callable[..., Edit]  # (model, case) -> Edit, the model unchanged


def _compute(module: str, compute: str, **overrides) -> ComputeFn:
    """``drift.editors.<module>.<compute>`` with the model's preset plus ``overrides``."""

    def run(model, case, **more) -> Edit:
        mod = importlib.import_module(f"drift.editors.{module}")
        hp = replace(mod.preset(model), **{**overrides, **more})
        return getattr(mod, compute)(model, case, hp)

    return run


COMPUTE: dict[str, ComputeFn] = {
    "rome": _compute("rome", "compute_rome"),
    "rome-awd": _compute("rome", "compute_rome", block_attention_grad=True),
    "memit": _compute("memit", "compute_memit"),
    "pmet": _compute("pmet", "compute_pmet"),
}


def _applied(compute: ComputeFn, **overrides) -> EditFn:
    @contextlib.contextmanager
    def run(model, case):
        edit = compute(model, case, **overrides)
        with edit.applied(model):
            yield edit

    return run


EDITORS: dict[str, EditFn] = {name: _applied(fn) for name, fn in COMPUTE.items()}


def get_compute(name: str) -> ComputeFn:
    """The function computing editor ``name``'s edit without applying it."""
    try:
        return COMPUTE[name]
    except KeyError:
        raise ValueError(f"unknown editor {name!r}; known editors: {sorted(COMPUTE)}") from None


def get_editor(name: str, **overrides) -> EditFn | None:
    """The editor called ``name`` (``"none"``: no edit), with hyper-parameter ``overrides``
    (e.g. ``extra_terms=(SADR(1e-2),)``). Unknown names raise ``ValueError``."""
    if name == "none":
        if overrides:
            raise ValueError(f"options {sorted(overrides)} need an editor, not 'none'")
        return None
    if name not in COMPUTE:
        raise ValueError(f"unknown editor {name!r}; known editors: {['none', *sorted(COMPUTE)]}")
    return _applied(COMPUTE[name], **overrides) if overrides else EDITORS[name]
