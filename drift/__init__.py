"""drift: mechanistic interpretability of knowledge editing, on TransformerLens.

Public API (re-exports only):
    load_model, Model, ModelLoadError    -- drift.models, drift.adapter
    score_targets, target_logprobs       -- drift.scoring
    edit                                 -- drift.quick (one fact, one line)
"""

from drift.adapter import Arch, Model
from drift.models import DEFAULT_MODEL, ModelLoadError, load_model
from drift.quick import edit
from drift.scoring import Scores, score_targets, target_logprobs

__all__ = [
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
