"""drift: mechanistic interpretability of knowledge editing, on TransformerLens.

Public API (re-exports only):
    load_model, Model, ModelLoadError    -- drift.models, drift.adapter
    score_targets, target_logprobs       -- drift.scoring
"""

from drift.adapter import Arch, Model
from drift.models import DEFAULT_MODEL, ModelLoadError, load_model
from drift.scoring import Scores, score_targets, target_logprobs

__all__ = [
    "Arch",
    "DEFAULT_MODEL",
    "Model",
    "ModelLoadError",
    "Scores",
    "load_model",
    "score_targets",
    "target_logprobs",
]
