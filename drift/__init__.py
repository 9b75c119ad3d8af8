"""drift: mechanistic interpretability of knowledge editing, on TransformerLens.

Public API (re-exports only):
    load_model, Model, ModelLoadError    -- drift.model.loading, drift.model.adapter
    score_targets, target_logprobs       -- drift.model.scoring
    edit                                 -- drift.quick (one fact, one line)
    __version__                          -- the installed distribution's version (drift-interp)
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

# each public name and the module it comes from, imported on first use: `import drift` (and the
# command line's option checks) do not import torch
_PUBLIC = {
    "Arch": "drift.model.adapter",
    "Model": "drift.model.adapter",
    "DEFAULT_MODEL": "drift.model.loading",
    "ModelLoadError": "drift.model.loading",
    "load_model": "drift.model.loading",
    "edit": "drift.quick",
    "Scores": "drift.model.scoring",
    "score_targets": "drift.model.scoring",
    "target_logprobs": "drift.model.scoring",
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
