"""Applying and removing weight deltas: the one mechanism every editor's output goes through.

Editors only *compute* an :class:`Edit` (a list of :class:`WeightDelta`); they never leave the
model changed. This module writes the deltas into the model and takes them out again:

- ``with edit.applied(model): ...`` — the edit is in place inside the block; on leaving it (also
  through an exception or KeyboardInterrupt) every touched weight is copied back from a saved
  original, so the weights are bit-identical to before (restoring by subtraction would not be).
- ``handle = edit.apply(model)`` … ``handle.remove()`` — the same for notebooks. Edits stack
  (sequential editing); they must be removed last-applied first.
- The record of applied edits lives with the hooked model's weights, not with the wrapper
  (:func:`applied_edits`): every :class:`~drift.model.adapter.Model` wrapping one hooked model (e.g.
  ``drift.load_model(model.hooked)``) sees the same stack, so an edit, or a copy of it (equal
  deltas: ``copy.deepcopy(edit)``), is refused when it is already in those weights, by whichever
  wrapper it was applied, and the caches' edited-model guard sees edits made through any wrapper.
- Applying is all-or-nothing: shapes and finiteness are checked before anything is written, and
  an interruption part-way through restores what was already written.
- In a half-precision model (bf16, fp16) each sum ``W + ΔW`` is taken in float32 and rounded to
  the model's dtype once (:func:`add_rounded_once`); removing the edit still copies the saved
  original back, so it is exact in every dtype.

Example:
    >>> import torch, drift
    >>> from drift.model.tiny import tiny_bridge
    >>> model = tiny_bridge()
    >>> W = model.weight("W_out", 1)                                            # [d_mlp, d_model]
    >>> before = W.clone()
    >>> edit = Edit([WeightDelta("W_out", 1, torch.ones(64, 32))])
    >>> with edit.applied(model):
    ...     torch.equal(W, before + 1)  # the model carries the edit here
    True
    >>> torch.equal(W, before)                                                  # bit-identical again
    True
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import Tensor

from drift.model.adapter import Model
from drift.model.sites import Weight
from drift.util.reprs import ITEMS, brief


@dataclass(frozen=True)
class WeightDelta:
    """An additive change to one weight: ``model.weight(which, layer) += delta``.

    ``which`` is the weight's one name (:data:`drift.model.sites.WEIGHTS`): ``"W_out"`` for the
    MLP's output matrix (``[d_mlp, d_model]``), ``"W_O"`` for the attention's (``[n_heads, d_head,
    d_model]``); the older ``"mlp_out"`` and ``"attn_out"`` are taken and stored as those.
    :attr:`weight` is the typed :class:`~drift.model.sites.Weight` (its ``result_name``, e.g.
    ``"mlp_out@4"``, is how results files name it).

    >>> WeightDelta("mlp_out", 4, torch.zeros(2)).which
    'W_out'
    """

    which: str
    layer: int
    delta: Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "which", Weight(self.which, self.layer).name)  # one name per weight

    @property
    def weight(self) -> Weight:
        """The weight it changes, e.g. ``Weight(name='W_out', layer=4)``."""
        return Weight(self.which, self.layer)

    def __repr__(self) -> str:
        norm = float(self.delta.norm())
        return f"WeightDelta({self.which}@{self.layer}, {brief(self.delta)}, norm {norm:.4g})"


@dataclass
class Edit:
    """What an editor computed: weight deltas plus diagnostics (losses, norms, timings)."""

    deltas: list[WeightDelta]
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        """``Edit(rome: W_out@4 Tensor[1536, 576] norm 0.84; 20 passes, 3.1 s)``."""
        shown = [
            f"{d.which}@{d.layer} {brief(d.delta)} norm {float(d.delta.norm()):.3g}" for d in self.deltas
        ]
        if len(shown) > ITEMS:
            shown = shown[:ITEMS] + [f"… {len(shown) - ITEMS} more"]
        notes = []
        if "losses" in self.info:
            notes.append(f"{len(self.info['losses'])} passes")
        if "seconds" in self.info:
            notes.append(f"{float(self.info['seconds']):.1f} s")
        if "fusion" in self.info:
            notes.append(f"fusion {brief(self.info['fusion'])}")
        tail = f"; {', '.join(notes)}" if notes else ""
        return f"Edit({self.info.get('editor', 'custom')}: {', '.join(shown) or 'no deltas'}{tail})"

    def fingerprint(self) -> str:
        """A digest of what the edit writes: each delta's weight, layer, dtype, shape and values,
        in order. A copy of an edit (``copy.deepcopy``, the same deltas computed again) has the
        same fingerprint; :meth:`apply` refuses one whose fingerprint is already in the weights
        (unless every delta is zero: two edits that change nothing may both be applied)."""
        h = hashlib.sha256()
        for d in self.deltas:
            t = d.delta.detach().contiguous().cpu()
            h.update(f"{d.which}@{d.layer}:{t.dtype}:{tuple(t.shape)};".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def apply(self, model: Model) -> "AppliedEdit":
        """Write the deltas into ``model``; returns a handle whose ``remove()`` restores it.
        Applying an edit that is already in the model's weights is refused (it would count
        twice): the same edit or a copy of it, through this wrapper or any other of the same
        hooked model."""
        from drift.model.loading import weights_digest

        weights_digest(model)  # the unedited weights' identity, pinned before the first write
        fingerprint = self.fingerprint()
        changes = any(bool(d.delta.any()) for d in self.deltas)  # an all-zero copy adds nothing twice
        if any(h.edit is self or (changes and h.fingerprint == fingerprint) for h in _stack(model)):
            raise RuntimeError(
                "this edit (or a copy of it) is already applied to the model's weights; remove it "
                "first (it would count twice)"
            )
        targets = []
        for d in self.deltas:
            w = model.weight(d.which, d.layer)
            if tuple(d.delta.shape) != tuple(w.shape):
                raise ValueError(
                    f"delta for {d.which} at layer {d.layer} has shape {tuple(d.delta.shape)}, "
                    f"the weight has {tuple(w.shape)}"
                )
            if not torch.isfinite(d.delta).all():
                raise ValueError(
                    f"delta for {d.which} at layer {d.layer} has NaN or inf values; nothing applied"
                )
            targets.append((w, d.delta))
        handle = AppliedEdit(model, self)
        handle.fingerprint = fingerprint
        with torch.no_grad():
            try:
                for w, delta in targets:
                    handle._saved.append((w, w.clone()))
                    add_rounded_once(w, delta)
            except BaseException:
                handle._restore()
                raise
        _stack(model).append(handle)
        return handle

    @contextlib.contextmanager
    def applied(self, model: Model) -> Iterator["Edit"]:
        """The edit is in the model inside the block and exactly removed after it — together with
        any edit applied inside the block and still in place (latest first), so the weights
        leave the block as they entered it, also on an exception."""
        handle = self.apply(model)
        try:
            yield self
        finally:
            stack = _stack(model)
            while handle in stack and stack[-1] is not handle:
                stack[-1].remove()
            handle.remove()

    def __add__(self, other: "Edit") -> "Edit":
        return Edit(self.deltas + other.deltas, {**self.info, **other.info})


HALF = (torch.bfloat16, torch.float16)


def add_rounded_once(w: Tensor, delta: Tensor) -> None:
    """``w += delta`` in place, rounded to ``w``'s dtype once.

    A half-precision weight (bf16, fp16) gets ``(w in float32 + delta in float32)`` rounded back
    once, as the reference code's ``w[...] += upd_matrix`` does (a float32 update added to a bf16
    parameter), rather than the update rounded to bf16 first and the sum rounded again: an update
    entry far smaller than its weight would be rounded twice. A float32 weight gets ``delta``
    added to it directly."""
    if w.dtype in HALF:
        w.copy_((w.float() + delta.to(device=w.device, dtype=torch.float32)).to(w.dtype))
    else:
        w.add_(delta.to(device=w.device, dtype=w.dtype))


# The edits in place in each hooked model's weights, earliest first: one list per hooked module
# (the TransformerBridge or HookedTransformer that owns the parameters), shared by every wrapper.
_APPLIED: "weakref.WeakKeyDictionary[object, list[AppliedEdit]]" = weakref.WeakKeyDictionary()


def applied_edits(model) -> list["AppliedEdit"]:
    """The edits in place in ``model``'s weights, earliest first, whichever wrapper applied them
    (``model``: a :class:`~drift.model.adapter.Model` or the hooked model itself). The list is the
    registry itself: read it, do not change it.

    >>> from drift.model.tiny import tiny_bridge
    >>> m = tiny_bridge()
    >>> m2 = Model(m.hooked)                                  # a second wrapper of the same weights
    >>> edit = Edit([WeightDelta("W_out", 1, torch.ones(64, 32))])
    >>> with edit.applied(m2):
    ...     [h.edit is edit for h in applied_edits(m)]
    [True]
    >>> applied_edits(m)
    []
    """
    return _stack(model)


def _stack(model) -> list:
    hooked = getattr(model, "hooked", model)
    stack = _APPLIED.get(hooked)
    if stack is None:
        stack = _APPLIED[hooked] = []
    return stack


class AppliedEdit:
    """An edit currently in a model. ``remove()`` restores the weights it touched bit for bit."""

    def __init__(self, model: Model, edit: Edit):
        self.model, self.edit = model, edit
        self.fingerprint = ""  # the edit's, set by Edit.apply
        self._saved: list[tuple[Tensor, Tensor]] = []
        self.removed = False

    def _restore(self) -> None:
        with torch.no_grad():
            for w, original in reversed(self._saved):
                w.copy_(original)
        self._saved.clear()

    def remove(self) -> None:
        if self.removed:
            return
        stack = _stack(self.model)
        if stack and stack[-1] is not self:
            raise RuntimeError(
                "edits must be removed in reverse order of application (remove the latest first)"
            )
        self._restore()
        if stack:
            stack.pop()
        self.removed = True


def remove_all(model: Model) -> None:
    """Remove every edit applied to ``model``, latest first: the original weights come back."""
    for handle in reversed(list(_stack(model))):
        handle.remove()
