"""Settings per model and editor, as data: which model is which, each editor's preset, SADR's γ.

Three tables and the functions that read them:

- :data:`FAMILIES`: the models drift has settings for, each with the checkpoint the papers edited
  and the other names its weights go by; :func:`family` finds a model's family from a hub name
  (organisation and case ignored), a local folder (its name, else the ``_name_or_path`` of its
  ``config.json``) or a loaded model.
- :data:`EDITOR_SETTINGS`: per editor and family, the hyper-parameters of the reference's hparams
  file as its runner (``examples/run_knowedit.py``) really ran them, else the main paper's
  App. C.2. :func:`editor_settings` reads it; each editor's ``preset(model)`` builds its
  hyper-parameters from it, or from its defaults when the model has no entry (with one INFO line
  naming the fallback, :func:`note_fallback`).
- :data:`SADR_SETTINGS`: per editor and family, SADR's γ and steps of the main paper's App. C.2,
  and for SmolLM2-135M's ROME and MEMIT the points drift's validation grids chose by the paper's
  procedure (ROME γ 4e-2 at 20 steps, ``results/validation/rome_sadr_g0.04_s20.json``; MEMIT γ
  4e-2 at 80 steps, ``results/validation-memit/memit_sadr_g0.04_s80.json``; docs/results.md,
  "Protocol for a new model"); :func:`sadr_setting` reads it, falling back to GPT-J's (the paper's
  main model) with one INFO line.

Where the reference runner's effective value differs from the paper's text, the table follows the
runner and says so in a comment (and in docs/fidelity.md, "Presets"). The runner sets
``v_lr = --lr`` (default 0.5) and ``v_num_grad_steps = --v_num_grad_steps`` (default 20) over
whatever the hparams file holds; ``kl_factor`` and the rest keep the file's values.

Example:
    >>> family("openai-community/gpt2-xl"), family("GPT2-XL"), family("EleutherAI/gpt-j-6b")
    ('gpt2-xl', 'gpt2-xl', 'gpt-j-6b')
    >>> family("someone/new-model") is None
    True
    >>> editor_settings("rome", "meta-llama/Meta-Llama-3-8B")["steps"]   # the runner's, not the file's 25
    20
    >>> sadr_setting("memit", "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T")
    {'gamma': 0.08, 'steps': 80}
    >>> sadr_setting("rome", "HuggingFaceTB/SmolLM2-135M-Instruct")   # drift's validation choice
    {'gamma': 0.04, 'steps': 20}
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    label: str  # how tables and notes name it
    checkpoint: str  # the hub checkpoint the papers edited (SmolLM2: drift's default model)
    aliases: tuple[str, ...] = ()  # other base names, lower case: the reference's labels, variants


# Base names are compared in lower case with "_" read as "-", after the last "/" (the hub
# organisation or the parent folders). A family's variants (chat, instruct) share its settings:
# same depth and widths, so the same layers.
FAMILIES: dict[str, Family] = {
    "smollm2-135m": Family("SmolLM2-135M", "HuggingFaceTB/SmolLM2-135M", ("smollm2-135m-instruct",)),
    "gpt2-xl": Family("GPT-2-XL", "openai-community/gpt2-xl"),
    # "gptj-6b": the reference's hparams label for it
    "gpt-j-6b": Family("GPT-J-6B", "EleutherAI/gpt-j-6b", ("gptj-6b", "gpt-j")),
    "gpt-neox-20b": Family("GPT-NeoX-20B", "EleutherAI/gpt-neox-20b"),
    "llama-3-8b": Family(
        "Llama-3-8B",
        "meta-llama/Meta-Llama-3-8B",
        ("llama-3-8b", "meta-llama-3-8b-instruct", "llama-3-8b-instruct"),
    ),
    "llama-2-13b": Family("Llama-2-13B", "meta-llama/Llama-2-13b-hf", ("llama-2-13b", "llama-2-13b-chat-hf")),
    "llama-2-7b": Family("Llama-2-7B", "meta-llama/Llama-2-7b-hf", ("llama-2-7b", "llama-2-7b-chat-hf")),
    # The papers edited the base model after 3T tokens, which the reference loads from a folder it
    # calls "TinyLlama-1.1B-pretrain-3T" (easyeditor/editors/easy_editor.py); on the hub that
    # checkpoint is the 1431k-step one. The chat model is a fine-tune of it.
    "tinyllama-1.1b": Family(
        "TinyLlama-1.1B",
        "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T",
        ("tinyllama-1.1b-pretrain-3t", "tinyllama-1.1b-chat-v1.0", "tinyllama-1.1b", "tinyllama"),
    ),
}


def _base(name: str) -> str:
    """``"openai-community/GPT2_XL/"`` -> ``"gpt2-xl"``."""
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower().replace("_", "-")


_BY_BASE: dict[str, str] = {
    base: key for key, f in FAMILIES.items() for base in (key, _base(f.checkpoint), *f.aliases)
}


def family(model) -> str | None:
    """The key in :data:`FAMILIES` of ``model`` (a name, a local folder, or a model with a
    ``name``), or ``None`` for a model of none of them. A folder is known by its own name, else
    by the ``_name_or_path`` its ``config.json`` records; a model by its ``name``, else its
    ``cfg.model_name``."""
    if model is None or (isinstance(model, (str, os.PathLike)) and not str(model)):
        return None
    if isinstance(model, (str, os.PathLike)):
        key = _BY_BASE.get(_base(str(model)))
        return key if key is not None else _from_config(Path(model))
    for name in (getattr(model, "name", None), getattr(getattr(model, "cfg", None), "model_name", None)):
        if isinstance(name, (str, os.PathLike)) and (key := family(name)) is not None:
            return key
    return None


def _from_config(folder: Path) -> str | None:
    try:
        source = json.loads((folder / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return _BY_BASE.get(_base(source)) if isinstance(source, str) and source else None


# Each editor's settings per family: every value the reference ran, written out, so a change of an
# editor's defaults leaves these models where the papers had them. Editors' defaults are
# SmolLM2-135M's (drift's choice; docs/fidelity.md, "Presets").
EDITOR_SETTINGS: dict[str, dict[str, dict]] = {
    "rome": {
        # SmolLM2-135M (30 layers): an early layer, like GPT-J's 5 of 28; GPT-J's other settings.
        "smollm2-135m": {"layer": 4},
        # hparams/ROME/gpt-j-6B.yaml
        "gpt-j-6b": {
            "layer": 5,
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 4.0,
        },
        # hparams/ROME/llama-8b.yaml, with 20 steps: the file says 25, the runner sets 20.
        "llama-3-8b": {
            "layer": 5,
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 1e-3,
            "clamp_norm": 4.0,
        },
        # no hparams file: App. C.2's layer 5 with GPT-J's file for the rest
        "gpt-neox-20b": {
            "layer": 5,
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 4.0,
        },
        # hparams/ROME/llama-13b.yaml: layer 6, where App. C.2 says 15 (the runner leaves the file's)
        "llama-2-13b": {
            "layer": 6,
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 1e-3,
            "clamp_norm": 4.0,
        },
        # hparams/ROME/tinyllama.yaml
        "tinyllama-1.1b": {
            "layer": 4,
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 2.0,
        },
        # not in the main paper: ROME's published GPT-2-XL layer with GPT-J's settings
        "gpt2-xl": {
            "layer": 17,
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 4.0,
        },
    },
    "memit": {
        # SmolLM2-135M: layers 3-5 and λ 2000 (MEMITHParams' defaults; see drift.editors.memit)
        "smollm2-135m": {},
        # hparams/MEMIT/gpt-j-6B.yaml
        "gpt-j-6b": {
            "layers": (3, 4, 5, 6, 7, 8),
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 0.75,
            "mom2_weight": 15000.0,
        },
        # hparams/MEMIT/llama-8b.yaml
        "llama-3-8b": {
            "layers": (4, 5, 6, 7, 8),
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 1e-3,
            "clamp_norm": 4.0,
            "mom2_weight": 15000.0,
        },
        # no hparams file: App. C.2's layers 13-16 with GPT-J's file for the rest
        "gpt-neox-20b": {
            "layers": (13, 14, 15, 16),
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 0.75,
            "mom2_weight": 15000.0,
        },
        # hparams/MEMIT/llama-13b.yaml
        "llama-2-13b": {
            "layers": (5, 6, 7, 8, 9),
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 1e-3,
            "clamp_norm": 4.0,
            "mom2_weight": 15000.0,
        },
        # hparams/MEMIT/tinyllama.yaml
        "tinyllama-1.1b": {
            "layers": (3, 4, 5),
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 8.0,
            "mom2_weight": 20000.0,
        },
        # not in the main paper: MEMIT's published GPT-2-XL range and λ
        "gpt2-xl": {
            "layers": (13, 14, 15, 16, 17),
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 0.75,
            "mom2_weight": 20000.0,
        },
    },
    "pmet": {
        # SmolLM2-135M: MEMIT's layers and λ, the reference's Llama-family clamp 4 (PMETHParams)
        "smollm2-135m": {},
        # hparams/PMET/gpt-j-6B.yaml as the runner runs it: lr 0.5 and 20 steps (the file says
        # 0.2 and 30; App. C.2 says 0.5 and 20); ω 1 as in the file (App. C.2 says 0.0625).
        "gpt-j-6b": {
            "layers": (3, 4, 5, 6, 7, 8),
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 1.0,
            "weight_decay": 0.5,
            "clamp_norm": 0.75,
            "mom2_weight": 15000.0,
        },
        # hparams/PMET/llama-8b.yaml
        "llama-3-8b": {
            "layers": (4, 5, 6, 7, 8),
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 4.0,
            "mom2_weight": 15000.0,
        },
        # no hparams file: App. C.2's layers 13-16 with the text's lr, steps and ω; clamp 4, λ 15000
        "gpt-neox-20b": {
            "layers": (13, 14, 15, 16),
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 4.0,
            "mom2_weight": 15000.0,
        },
        # hparams/PMET/llama-13b.yaml
        "llama-2-13b": {
            "layers": (7, 8, 9),
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 4.0,
            "mom2_weight": 15000.0,
        },
        # hparams/PMET/tinyllama.yaml
        "tinyllama-1.1b": {
            "layers": (3, 4, 5),
            "steps": 20,
            "lr": 0.5,
            "kl_factor": 0.0625,
            "weight_decay": 0.5,
            "clamp_norm": 4.0,
            "mom2_weight": 20000.0,
        },
        # not in the main paper: MEMIT's published GPT-2-XL range and λ
        "gpt2-xl": {"layers": (13, 14, 15, 16, 17), "mom2_weight": 20000.0},
    },
    # The AdaPLE paper edits five layers ending at the causal-tracing peak, as MEMIT does; the rest
    # is PMET's (AdaPLEHParams' defaults).
    "adaple": {
        "smollm2-135m": {},
        "gpt-j-6b": {"layers": (3, 4, 5, 6, 7, 8), "mom2_weight": 15000.0},
        "llama-2-7b": {"layers": (4, 5, 6, 7, 8), "weight_decay": 1e-3, "mom2_weight": 15000.0},
        "gpt-neox-20b": {"layers": (13, 14, 15, 16), "mom2_weight": 15000.0},
    },
}
EDITOR_SETTINGS["rome-awd"] = EDITOR_SETTINGS["rome"]  # ROME with blocked attention gradients

# SADR's γ (the paper's scale: the reference's attn_W_loss_weight × 1e-4) and optimisation steps,
# main paper App. C.2 per editor and model (SmolLM2-135M's ROME row: drift's validation grid, by the
# paper's procedure); the GPT-J rows are also those of the reference's
# examples/scripts/{rome,memit,pmet}.sh (weights 100, 50, 800). Any key besides "gamma" is a
# hyper-parameter of the editor's run.
SADR_SETTINGS: dict[str, dict[str, dict]] = {
    "rome": {
        # not in the paper: SmolLM2-135M's own point, chosen as the paper chooses a new model's
        # (App. C.2) by drift's validation grid (docs/results.md, "Protocol for a new model": 24
        # validation cases, γ ∈ {5e-3, 1e-2, 4e-2, 8e-2} × {20, 40, 80} steps, the rule's choice);
        # the chosen point's results file is results/validation/rome_sadr_g0.04_s20.json, and
        # GPT-J's γ 1e-2 at 80 steps failed the rule there (PS −4.2). PMET's grid was not run
        # on it, so PMET keeps GPT-J's row.
        "smollm2-135m": {"gamma": 4e-2, "steps": 20},
        "gpt-j-6b": {"gamma": 1e-2, "steps": 80},
        "llama-3-8b": {"gamma": 4e-2, "steps": 80},
        "gpt-neox-20b": {"gamma": 1e-2, "steps": 80},
        "llama-2-13b": {"gamma": 1e-2, "steps": 80},
        "tinyllama-1.1b": {"gamma": 8e-2, "steps": 80},
    },
    "memit": {
        # App. C.2 also gives lr 0.25 here; examples/scripts/memit.sh passes no --lr, so the
        # runner ran 0.5 (the preset's): `--hp lr=0.25` gives the text's.
        # not in the paper: SmolLM2-135M's own point, MEMIT's validation grid's choice by the same
        # rule as ROME's (results/validation-memit/memit_sadr_g0.04_s80.json; docs/results.md,
        # "MEMIT's own grid"); GPT-J's γ 5e-3 at 20 steps changed no success rate there.
        "smollm2-135m": {"gamma": 4e-2, "steps": 80},
        "gpt-j-6b": {"gamma": 5e-3, "steps": 20},
        "llama-3-8b": {"gamma": 1e-2, "steps": 80},
        "gpt-neox-20b": {"gamma": 5e-3, "steps": 80},
        "llama-2-13b": {"gamma": 4e-2, "steps": 80},
        "tinyllama-1.1b": {"gamma": 8e-2, "steps": 80},
    },
    "pmet": {
        "gpt-j-6b": {"gamma": 8e-2, "steps": 40},
        "llama-3-8b": {"gamma": 1e-2, "steps": 80},
        "gpt-neox-20b": {"gamma": 2e-3, "steps": 20},
        "llama-2-13b": {"gamma": 5e-3, "steps": 20},
        "tinyllama-1.1b": {"gamma": 8e-2, "steps": 40},
    },
}
SADR_SETTINGS["rome-awd"] = SADR_SETTINGS["rome"]
SADR_FALLBACK = "gpt-j-6b"  # the paper's main model: its setting serves every model it lacks

_NOTED: set[tuple[str, str, str]] = set()


def _label(model) -> str:
    name = model if isinstance(model, (str, os.PathLike)) else getattr(model, "name", None)
    return str(name) if name is not None else type(model).__name__


def note_fallback(kind: str, editor: str, model, fallback: str) -> None:
    """One INFO line, once per process for each (kind, editor, model), saying that ``model`` has
    no ``kind`` setting for ``editor`` and what it gets instead (``fallback``)."""
    key = (kind, editor, _label(model))
    if key in _NOTED or not log.isEnabledFor(logging.INFO):
        return
    _NOTED.add(key)
    known = family(model)
    what = f"model {key[2]!r}" + (f" ({FAMILIES[known].label})" if known else "")
    log.info("no %s %s for %s; using %s", editor, kind, what, fallback)


def editor_settings(editor: str, model) -> dict | None:
    """The hyper-parameters :data:`EDITOR_SETTINGS` holds for ``editor`` on ``model``'s family,
    or ``None`` where it holds none (the editor's ``preset`` then scales its defaults and calls
    :func:`note_fallback`)."""
    if editor not in EDITOR_SETTINGS:
        raise ValueError(
            f"no settings for editor {editor!r}; editors with settings: {sorted(EDITOR_SETTINGS)}"
        )
    key = family(model)
    found = EDITOR_SETTINGS[editor].get(key) if key is not None else None
    return dict(found) if found is not None else None


def sadr_setting(editor: str, model=None) -> dict:
    """``{"gamma": γ, "steps": n, …}`` of the main paper's SADR run of ``editor`` on ``model``'s
    family (SmolLM2-135M's ROME: the validation grid's choice, γ 4e-2 at 20 steps); a model with
    no row (``None`` included) gets GPT-J's, with a note unless ``model`` is ``None``. An editor
    the paper ran without SADR (AdaPLE) raises ``ValueError``."""
    if editor not in SADR_SETTINGS:
        raise ValueError(
            f"the paper gives no SADR setting for editor {editor!r}; pass --sadr GAMMA "
            f"(settings exist for {sorted(SADR_SETTINGS)})"
        )
    table = SADR_SETTINGS[editor]
    key = family(model)
    if key in table:
        return dict(table[key])
    fallback = dict(table[SADR_FALLBACK])
    if model is not None:
        shown = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in fallback.items())
        note_fallback("SADR setting", editor, model, f"{FAMILIES[SADR_FALLBACK].label}'s ({shown})")
    return fallback
