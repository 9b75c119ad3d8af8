"""drift: mechanistic interpretability of knowledge editing, on TransformerLens.

Public API (re-exports only):
    load_model, Model, ModelLoadError    -- drift.models, drift.adapter
    score_targets, target_logprobs       -- drift.scoring
    edit                                 -- drift.quick (one fact, one line)
    __version__                          -- the installed distribution's version (drift-interp)
"""

from importlib.metadata import PackageNotFoundError, version

from drift.adapter import Arch, Model
from drift.models import DEFAULT_MODEL, ModelLoadError, load_model
from drift.quick import edit
from drift.scoring import Scores, score_targets, target_logprobs

DISTRIBUTION = "drift-interp"  # the name on PyPI; the import name is drift
try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

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
