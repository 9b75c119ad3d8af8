"""drift: mechanistic interpretability of knowledge editing, on TransformerLens.

Public API (re-exports, each imported on first use, so ``import drift`` does not import torch):

    load_model, Model, ModelLoadError, DEFAULT_MODEL   -- loading a hooked model (drift.model.loading)
    edit, edit_and_score, ScoreTable                   -- one line per edit (drift.quick)
    evaluate, EvalSpec                                 -- the standard metrics and what they measure
                                                          (drift.evaluation.evaluate, drift.evaluation.spec)
    report                                             -- one HTML page per edit (drift.interp.report)
    get_editor, get_compute, SADR                      -- editors and the paper's term (drift.editors)
    load_cases, EditCase, summarise                    -- cases and summaries
    score_targets, target_logprobs, Scores             -- batched scoring (drift.model.scoring)
    __version__                                        -- the installed distribution's version

Every package is reachable as an attribute too (``drift.interp``, ``drift.evaluation`` …),
imported on first use.

Example:
    >>> import drift
    >>> cases = drift.load_cases("builtin", limit=1)
    >>> drift.evaluate(model, cases, spec=drift.EvalSpec(fluency=False))[0]["metrics"]["ES"] >= 0
    True
"""

import importlib
import importlib.util
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
    "edit_and_score": "drift.quick",
    "ScoreTable": "drift.quick",
    "Scores": "drift.model.scoring",
    "score_targets": "drift.model.scoring",
    "target_logprobs": "drift.model.scoring",
    "get_editor": "drift.editors",
    "get_compute": "drift.editors",
    "SADR": "drift.editors.sadr",
    "load_cases": "drift.data",
    "EditCase": "drift.data",
    "summarise": "drift.evaluation.metrics",
    "evaluate": "drift.evaluation.evaluate",
    "EvalSpec": "drift.evaluation.spec",
    "report": "drift.interp.report",
}

DISTRIBUTION = "drift-interp"  # the name on PyPI; the import name is drift
try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    """A public name, imported from its module on first use (PEP 562); a subpackage's name gives
    the subpackage."""
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'drift' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


__all__ = [
    "__version__",
    "Arch",
    "DEFAULT_MODEL",
    "EditCase",
    "EvalSpec",
    "Model",
    "ModelLoadError",
    "SADR",
    "ScoreTable",
    "Scores",
    "edit",
    "edit_and_score",
    "evaluate",
    "get_compute",
    "get_editor",
    "load_cases",
    "load_model",
    "report",
    "score_targets",
    "summarise",
    "target_logprobs",
]
