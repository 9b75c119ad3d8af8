"""Progress bars and log lines of drift's long calls: a bar by default, silent when asked.

Every module logs through its own ``logging.getLogger(__name__)``, under the ``drift`` logger. A
long call (``drift.edit``, ``evaluate``, the tracing scans, key statistics, sequential editing,
the audit) takes ``verbose=``:

- ``None`` (the default): what the enclosing call chose; at the top level, tqdm bars
  (``tqdm.auto``: a widget in Jupyter, a bar on a terminal's stderr) and no log lines;
- ``True``: the bars and drift's INFO lines too (an editor's loss per step, what is computed or
  loaded) on stderr, or through your own logging handlers if you configured any;
- ``False``: nothing but warnings.

A call that shows one bar over many items (``evaluate``) runs each item quietly, so its bar is not
broken up by every edit's own bar; ``python -m drift -v`` (:func:`configure`) shows those too.
The command line shows bars where stderr is a terminal (``-q``: never). Loading a model
(:func:`quiet_loading`) keeps transformers' own "Loading weights" bars off.

Example:
    >>> from drift.util.progress import verbose, enabled, DEFAULT
    >>> DEFAULT                       # bars unless a call, or the command line, says otherwise
    True
    >>> with verbose(False):
    ...     enabled()
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

# whether bars show: None until a call or the command line decides, which means DEFAULT
_SHOWN: contextvars.ContextVar[bool | None] = contextvars.ContextVar("drift_verbose", default=None)
DEFAULT = True
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
    """Whether the current call shows its progress bars."""
    shown = _SHOWN.get()
    return DEFAULT if shown is None else shown


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


@contextlib.contextmanager
def bars(on: bool | None) -> Iterator[None]:
    """Show (``True``) or hide (``False``) the bars only inside the block, drift's log lines
    unchanged; ``None`` changes nothing (a long call's ``progress=``)."""
    if on is None:
        yield
        return
    token = _SHOWN.set(on)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def bar(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A tqdm bar (``leave=False`` unless given) that shows only where progress is asked for."""
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=not enabled(), **kwargs)


def configure(verbosity: int) -> None:
    """Logging for a command-line process: ``-1`` errors only and no bars (``-q``), ``0``
    warnings, and bars where stderr is a terminal, ``1`` INFO lines and every long call's bars
    (``-v``), ``2`` DEBUG too (``-vv``)."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if not any(isinstance(h, _Stderr) for h in ROOT.handlers):
        ROOT.addHandler(_stderr_handler())
    ROOT.setLevel(level)
    _SHOWN.set(verbosity >= 1 or (verbosity == 0 and _is_terminal(sys.stderr)))


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """transformers' own progress bars ("Loading weights", checkpoint shards) off inside the
    block; the Hugging Face hub's download bars keep their setting. Both as before afterwards."""
    import huggingface_hub.utils as hub
    from transformers.utils import logging as tf_logging

    had_bars, hub_off = tf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled()
    tf_logging.disable_progress_bar()  # (which switches the hub's off too)
    if not hub_off:
        hub.enable_progress_bars()
    try:
        yield
    finally:
        if had_bars:
            tf_logging.enable_progress_bar()
        if hub_off:
            hub.disable_progress_bars()
        else:
            hub.enable_progress_bars()
