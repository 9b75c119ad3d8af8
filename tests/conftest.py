"""Shared fixtures: the real default model (the tiny one, ``tiny``, is in the root conftest.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEV_SET = SHARED_DATA / "counterfact-merged-dev.json"


@pytest.fixture(scope="session")
def real():
    import drift

    return drift.load_model()


def weights_hash(model) -> str:
    """SHA-256 over every parameter's bytes: equal hashes mean bit-identical weights."""
    h = hashlib.sha256()
    for name, p in sorted(model.hooked.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_analysis(name: str):
    """An ``analyses/NAME.py`` script as a module, to test its functions without running it."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "analyses" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_analysis", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
