"""drift: mechanistic interpretability of knowledge editing, on TransformerLens.

Public API (re-exports only):
    load_model, Model, ModelLoadError    -- drift.models, drift.adapter
    score_targets, target_logprobs       -- drift.scoring
    edit                                 -- drift.quick (one fact, one line)
    __version__                          -- the installed distribution's version (drift-interp)
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

# each public name and the module it comes from, imported on first use: `import drift` (and the
# command line's option checks) do not import torch
_PUBLIC = {
    "Arch": "drift.adapter",
    "Model": "drift.adapter",
    "DEFAULT_MODEL": "drift.models",
    "ModelLoadError": "drift.models",
    "load_model": "drift.models",
    "edit": "drift.quick",
    "Scores": "drift.scoring",
    "score_targets": "drift.scoring",
    "target_logprobs": "drift.scoring",
}

DISTRIBUTION = "drift-interp"  # the name on PyPI; the import name is drift
try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    """A public name, imported from its module on first use (PEP 562)."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'drift' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


__all__ = [
    "__version__",
    "Arch",
    "DEFAULT_MODEL",
    "Model",
    "ModelLoadError",
    "Scores",
    "edit",
    "load_model",
    "score_targets",
    "target_logprobs",
]
