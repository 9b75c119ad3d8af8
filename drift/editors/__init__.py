"""Knowledge editors. Each computes weight deltas; ``drift.editors.base`` applies and removes them.

``COMPUTE`` maps a command-line name to a :class:`Compute`: ``compute(model, case) -> Edit``
computes the edit with the model's preset (the model unchanged), ``compute.many(model, cases)``
computes several cases' edits with their target vectors optimised in one batch. ``EDITORS`` wraps
each as ``(model, case) -> context manager`` inside which the model carries the edit (see
``drift.evaluation.evaluate.EditFn``), removed exactly when the block ends.

Example:
    >>> edit_fn = get_editor("rome", steps=2)                # the model's preset, with overrides
    >>> p = model.target_prob(case.prompt, case.o_edit)
    >>> with edit_fn(model, case) as edit:
    ...     model.target_prob(case.prompt, case.o_edit) != p     # the model carries the edit
    True
    >>> model.target_prob(case.prompt, case.o_edit) == p         # and is exactly as before after it
    True
    >>> edits = get_compute("rome", steps=2).many(model, cases[:4])    # four edits, one batch
    >>> [e.info["batch"] for e in edits]
    [4, 4, 4, 4]
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import types
import typing
from collections.abc import Callable
from dataclasses import replace

from drift.editors.base import Edit
from drift.editors.fusion import case_seed, drop_and_rescale

ComputeFn = Callable[..., Edit]  # (model, case) -> Edit, the model unchanged


@dataclasses.dataclass(frozen=True)
class Compute:
    """An editor's computation with its settings: ``compute(model, case)`` returns the case's
    :class:`~drift.editors.base.Edit` (the model unchanged) and ``compute.many(model, cases)``
    each case's, their target vectors optimised together in one batch (the same edits up to
    float rounding, fewer passes). Settings: the model's preset, then ``overrides``, then any
    keywords of the call; ``fuse``: drop-and-rescale ``(rate, seed)`` applied afterwards."""

    module: str  # drift.editors.<module>
    function: str  # its ``(model, cases, hp) -> list[Edit]``
    overrides: dict = dataclasses.field(default_factory=dict)
    fuse: tuple[float, int] | None = None

    def __call__(self, model, case, **more) -> Edit:
        return self.many(model, [case], **more)[0]

    def many(self, model, cases, **more) -> list[Edit]:
        mod = importlib.import_module(f"drift.editors.{self.module}")
        hp = replace(mod.preset(model), **{**self.overrides, **more})
        edits = getattr(mod, self.function)(model, list(cases), hp)
        if self.fuse:
            rate, seed = self.fuse
            edits = [drop_and_rescale(e, rate, seed=case_seed(c.case_id, seed)) for e, c in zip(edits, cases)]
        return edits


# Each editor's module and hyper-parameter class, to name a bad override before any work.
HPARAMS: dict[str, tuple[str, str]] = {
    "rome": ("rome", "ROMEHParams"),
    "rome-awd": ("rome", "ROMEHParams"),
    "memit": ("memit", "MEMITHParams"),
    "pmet": ("pmet", "PMETHParams"),
    "adaple": ("adaple", "AdaPLEHParams"),
}


def _hparams_class(name: str):
    module, cls = HPARAMS[name]
    return getattr(importlib.import_module(f"drift.editors.{module}"), cls)


def check_overrides(name: str, overrides: dict) -> None:
    """Raise ``ValueError`` naming any key of ``overrides`` that editor ``name`` has no
    hyper-parameter for (e.g. a typo in ``--hp``), or whose value is not of the default's kind
    (a number for a number, a flag for a flag), or ``steps`` below 1."""
    fields = {f.name: f for f in dataclasses.fields(_hparams_class(name))}
    bad = sorted(set(overrides) - set(fields))
    if bad:
        raise ValueError(
            f"editor {name!r} has no hyper-parameter {', '.join(map(repr, bad))}; "
            f"its hyper-parameters: {sorted(fields)}"
        )
    defaults = _hparams_class(name)()
    hints = typing.get_type_hints(_hparams_class(name))
    for key, value in overrides.items():
        if not _conforms(value, hints[key]):
            default = getattr(defaults, key)
            raise ValueError(
                f"hyper-parameter {key!r} of editor {name!r} takes a {_kind(hints[key])} "
                f"(like its default {default!r}), got {value!r}"
            )
    if "steps" in overrides and overrides["steps"] < 1:
        raise ValueError(f"steps must be at least 1, got {overrides['steps']}")


def _conforms(value, hint) -> bool:
    """Whether ``value`` is of the kind a hyper-parameter's annotation ``hint`` names: a bool for
    ``bool``, a whole number (not a bool, not ``2.5``) for ``int``, any number for ``float``, a
    tuple of such for ``tuple[...]``, either side of ``X | None``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_conforms(v, args[0]) for v in value)
        return len(value) == len(args) and all(_conforms(v, a) for v, a in zip(value, args))
    if isinstance(hint, type):
        try:
            return isinstance(value, hint)
        except TypeError:  # a protocol that cannot be checked at run time
            return True
    return True


def _kind(hint) -> str:
    """An annotation as a user reads it: ``int``, ``tuple[tuple[int, int], ...]``."""
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("drift.editors.objectives.", "")


COMPUTE: dict[str, Compute] = {
    "rome": Compute("rome", "compute_rome_many"),
    "rome-awd": Compute("rome", "compute_rome_many", {"block_attention_grad": True}),
    "memit": Compute("memit", "compute_memit_many"),
    "pmet": Compute("pmet", "compute_pmet_many"),
    "adaple": Compute("adaple", "compute_adaple_many"),
}


class Applied:
    """An editor as evaluation uses it (``drift.evaluation.evaluate.EditFn``): ``with editor(model, case)
    as edit:`` the model carries the case's edit inside the block, exactly removed after it.
    ``compute`` is the :class:`Compute` behind it, for computing many cases' edits at once."""

    def __init__(self, compute: Compute):
        self.compute = compute

    @contextlib.contextmanager
    def __call__(self, model, case):
        edit = self.compute(model, case)
        with edit.applied(model):
            yield edit

    def __repr__(self) -> str:
        return f"Applied({self.compute!r})"


def get_compute(name: str, *, drop_rate: float | None = None, seed: int = 0, **overrides) -> Compute:
    """The function computing editor ``name``'s edit without applying it, with hyper-parameter
    ``overrides`` and drop-and-rescale fusion at ``drop_rate`` (``None``: the editor's default,
    0.8 for AdaPLE and none for the others; ``0``: no fusion), masks seeded by ``seed``. Range
    editors (MEMIT, PMET, AdaPLE) fuse each layer's update inside their layer loop."""
    if name not in COMPUTE:
        raise ValueError(f"unknown editor {name!r}; known editors: {sorted(COMPUTE)}")
    check_overrides(name, overrides)
    layered = "drop_rate" in {f.name for f in dataclasses.fields(_hparams_class(name))}
    if drop_rate is not None and not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop rate must be in [0, 1), got {drop_rate}")
    if layered:  # range editors drop inside their layer loop (AdaPLE's Algorithm 1)
        overrides = {
            "drop_seed": seed,
            **overrides,
            **({} if drop_rate is None else {"drop_rate": drop_rate}),
        }
    base = COMPUTE[name]
    fuse = (drop_rate, seed) if not layered and drop_rate else None
    return replace(base, overrides={**base.overrides, **overrides}, fuse=fuse)


EDITORS: dict[str, Applied] = {name: Applied(get_compute(name)) for name in COMPUTE}


def get_editor(name: str, *, drop_rate: float | None = None, seed: int = 0, **overrides) -> Applied | None:
    """The editor called ``name`` (``"none"``: no edit), with hyper-parameter ``overrides``
    (e.g. ``extra_terms=(SADR(1e-2),)``) and fusion as in :func:`get_compute`. Unknown names
    raise ``ValueError``."""
    if name == "none":
        if overrides or drop_rate:
            raise ValueError(
                f"options {sorted(overrides) + (['drop_rate'] if drop_rate else [])} "
                "need an editor, not 'none'"
            )
        return None
    if name not in COMPUTE:
        raise ValueError(f"unknown editor {name!r}; known editors: {['none', *sorted(COMPUTE)]}")
    if not overrides and drop_rate is None:
        return EDITORS[name]
    return Applied(get_compute(name, drop_rate=drop_rate, seed=seed, **overrides))
