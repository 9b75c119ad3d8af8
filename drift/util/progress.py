"""Progress bars and log lines of drift's long calls: silent unless asked.

Every module logs through its own ``logging.getLogger(__name__)``, under the ``drift`` logger. A
long call (``drift.edit``, the tracing functions, key statistics, ``evaluate``) takes
``verbose=``:

- ``True``: for the call's duration its tqdm bars show, and so do drift's INFO lines (an editor's
  loss per step, what is computed or loaded) on stderr, or through your own logging handlers if
  you configured any;
- ``False``: nothing but warnings;
- ``None`` (the default): what the enclosing call chose, silent at the top level.

A call that shows one bar over many items (``evaluate``) runs each item quietly, so its bar is not
broken up by every edit's loss lines; ``python -m drift -v`` (:func:`configure`) shows those too.

Example:
    >>> from drift.util.progress import verbose, enabled
    >>> with verbose(True):
    ...     enabled()
    True
    >>> enabled()
    False
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from typing import Iterable, Iterator

from tqdm.auto import tqdm

ROOT = logging.getLogger("drift")
FORMAT = "%(name)s: %(message)s"

_SHOWN = contextvars.ContextVar("drift_verbose", default=False)
# the drift logger's level outside every verbose(True) block, which verbose(False) restores
_OUTER_LEVEL: contextvars.ContextVar[int | None] = contextvars.ContextVar("drift_outer_level", default=None)


class _Stderr(logging.StreamHandler):
    """Writes each record to whatever ``sys.stderr`` is at that moment (a notebook's or a test's
    capture included), never to a stream that has since been closed."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _stderr_handler() -> logging.Handler:
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def enabled() -> bool:
    """Whether the current call shows its progress."""
    return _SHOWN.get()


@contextlib.contextmanager
def verbose(on: bool | None) -> Iterator[None]:
    """Show (``True``) or hide (``False``) drift's bars and INFO lines inside the block;
    ``None`` changes nothing."""
    if on is None:
        yield
        return
    saved_level = ROOT.level
    outer = _OUTER_LEVEL.get()
    tokens = [_SHOWN.set(on)]
    handler = None
    if on:
        if outer is None:
            tokens.append(_OUTER_LEVEL.set(saved_level))
        if ROOT.getEffectiveLevel() > logging.INFO:
            ROOT.setLevel(logging.INFO)
        if not ROOT.hasHandlers():
            handler = _stderr_handler()
            ROOT.addHandler(handler)
    elif outer is not None:
        ROOT.setLevel(outer)
    try:
        yield
    finally:
        if handler is not None:
            ROOT.removeHandler(handler)
        ROOT.setLevel(saved_level)
        for token in reversed(tokens):
            token.var.reset(token)


def bar(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A tqdm bar (``leave=False`` unless given) that shows only where progress is asked for."""
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=not enabled(), **kwargs)


def configure(verbosity: int) -> None:
    """Logging for a command-line process: ``-1`` errors only (``-q``), ``0`` warnings, ``1``
    INFO lines and every long call's progress (``-v``), ``2`` DEBUG too (``-vv``)."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if not any(isinstance(h, _Stderr) for h in ROOT.handlers):
        ROOT.addHandler(_stderr_handler())
    ROOT.setLevel(level)
    _SHOWN.set(verbosity >= 1)
