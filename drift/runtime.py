"""Process-wide runtime settings drift applies when it loads a model.

CPU threads: on small machines (two vCPUs or fewer) torch's second thread costs more than it
gives; measured here on a 2-vCPU machine, SmolLM2-135M ran a 1-token forward 4x and a 5-token
forward 19x faster on one thread than on two, and a 32x60-token batch 1.6x faster. So drift
uses one thread there. ``DRIFT_THREADS=N`` overrides this either way (``DRIFT_THREADS=0``:
leave torch's own setting alone).
"""

from __future__ import annotations

import os

import torch


def configure_threads() -> int:
    """Apply the thread policy above; returns the number of threads torch now uses."""
    env = os.environ.get("DRIFT_THREADS")
    if env is not None:
        n = int(env)
        if n > 0:
            torch.set_num_threads(n)
    elif (os.cpu_count() or 1) <= 2:
        torch.set_num_threads(1)
    return torch.get_num_threads()
