"""Process-wide runtime settings drift applies when it loads a model.

CPU threads: on small machines (two vCPUs or fewer) torch's second thread costs more than it
gives; measured here on a 2-vCPU machine, SmolLM2-135M ran a 1-token forward 4x and a 5-token
forward 19x faster on one thread than on two, and a 32x60-token batch 1.6x faster. So drift
uses one thread there. ``DRIFT_THREADS=N`` overrides this either way (``DRIFT_THREADS=0``:
leave torch's own setting alone).

Splitting work: :func:`share` gives one process its part of a list of cases or configurations
(``"I/N"``), so N processes or GPUs can share a long run and their results be joined after.
"""

from __future__ import annotations

import os

import torch


def configure_threads() -> int:
    """Apply the thread policy above; returns the number of threads torch now uses."""
    env = os.environ.get("DRIFT_THREADS")
    if env is not None:
        n = threads_setting(env)
        if n > 0:
            torch.set_num_threads(n)
    elif (os.cpu_count() or 1) <= 2:
        torch.set_num_threads(1)
    return torch.get_num_threads()


def threads_setting(text: str) -> int:
    """``DRIFT_THREADS`` as a number of threads: a whole number >= 0 (0: torch's own setting); a
    ``ValueError`` naming the variable and its value otherwise.

    >>> threads_setting("2")
    2
    >>> threads_setting("abc")
    Traceback (most recent call last):
    ...
    ValueError: DRIFT_THREADS must be a whole number of CPU threads >= 0 (0: torch's own setting), got 'abc'
    """
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(
            f"DRIFT_THREADS must be a whole number of CPU threads >= 0 (0: torch's own setting), got {text!r}"
        )
    return n


def share(items: list, spec: str | None, *, contiguous: bool = True, option: str = "--shard") -> list:
    """The ``I``-th of ``N`` parts of ``items`` for ``spec`` = ``"I/N"`` (I from 1; all of them for
    ``None``): contiguous, nearly equal slices, or every N-th item from the I-th
    (``contiguous=False``, which balances lists whose items grow in cost). ``option`` names the
    command-line option in errors.

    >>> share(list(range(7)), "2/3"), share(list(range(7)), "2/3", contiguous=False)
    ([2, 3], [1, 4])
    """
    if spec is None:
        return list(items)
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"{option} expects I/N (e.g. 2/4), got {spec!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"{option} {spec}: I must be between 1 and N")
    if contiguous:
        return list(items[(i - 1) * len(items) // n : i * len(items) // n])
    return list(items[i - 1 :: n])
