"""Shared fixtures: the real default model (the tiny one, ``tiny``, is in the root conftest.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from drift.editors.objectives import LossTerm

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEV_SET = SHARED_DATA / "counterfact-merged-dev.json"


@pytest.fixture(scope="session")
def real():
    import drift

    return drift.load_model()


@pytest.fixture(scope="session")
def rome_eiffel(real):
    """ROME (the model's preset) of "The Eiffel Tower is located in the city of" Paris -> Rome on
    the real model, computed once per worker for the tests that only read it (group them with
    ``@pytest.mark.xdist_group("rome_eiffel")`` so one worker computes it)."""
    from drift.editors.rome import compute_rome, preset
    from tests.test_rome import EIFFEL

    return compute_rome(real, EIFFEL, preset(real))


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


@pytest.fixture(scope="session")
def tiny_dir() -> str:
    """The tiny model's folder (what ``--model`` takes), saved once under the run's cache."""
    from drift.model.tiny import tiny_folder

    return str(tiny_folder(seed=0))


def run_analysis(name: str, argv: list[str], capsys) -> tuple[str, str]:
    """Run ``analyses/NAME.py`` in this process through its ``main(argv)``; its ``(stdout, stderr)``."""
    capsys.readouterr()
    load_analysis(name).main([str(a) for a in argv])
    out = capsys.readouterr()
    return out.out, out.err


class ConstantTerm(LossTerm):
    """A loss term of ``value`` at every pass: it moves the total loss, never the gradient."""

    def __init__(self, value: float = 1.0, name: str = "const"):
        self.value, self.name = value, name

    def __call__(self, step):
        return torch.tensor(self.value)


class RecordingTerm(LossTerm):
    """A loss term of 0 that keeps each pass's ``Step``: what a loss term is shown."""

    name = "record"

    def __init__(self):
        self.steps = []

    def fresh(self) -> "RecordingTerm":
        return RecordingTerm()

    def __call__(self, step):
        self.steps.append(step)
        return torch.zeros(())
