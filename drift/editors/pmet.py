"""PMET: optimise the attention and the MLP outputs of the last critical layer, write only the MLP one.

The two component outputs at the last layer L of the range each get their own vector
(``[("attn_out", L), ("mlp_out", L)]``), optimised together with the editors' objective; the
attention vector only helps the optimisation carry information the MLP does not need (PMET
paper §"Method"). The MLP target v = m_L + δ_mlp is then spread over the range with the square
root divisor R/√(L − l + 1) (PMET paper Eq. 11) through
:func:`drift.editors.memit.compute_range_edit`. As in the reference code, each vector is clamped
to ``clamp_norm`` times its own original output, both enter the weight decay, and once every
target token is the argmax the NLL is weighted 0.1 and the optimisation stops when the KL term
is ≤ 0.01 (``pmet_schedule``).

Example:
    >>> edit = compute_pmet(model, case, PMETHParams(layers=(0, 1), steps=2))  # SmolLM2-135M: (3, 4, 5)
    >>> [(d.which, d.layer) for d in edit.deltas]                            # only the MLPs are written
    [('mlp_out', 0), ('mlp_out', 1)]
"""

from __future__ import annotations

from dataclasses import dataclass

from drift.adapter import Model
from drift.data import EditCase
from drift.editors.base import Edit
from drift.editors.memit import MEMITHParams, compute_range_edit
from drift.editors.memit import preset as _range_preset
from drift.editors.spread import square_root


@dataclass(frozen=True)
class PMETHParams(MEMITHParams):
    clamp_norm: float = (
        4.0  # each component vector within 4·‖its original output‖ (reference: TinyLlama, Llama)
    )


# SmolLM2-135M: the same layers and λ as MEMIT's preset (see drift.editors.memit) and the
# reference code's Llama-family clamp (4; its GPT-J file has 0.75). Larger models: the reference
# code's hparams files (GPT-J, TinyLlama, Llama-3-8B, Llama-2-13B), else App. C.2's range.
PRESETS: dict[str, PMETHParams] = {
    "smollm2-135m": PMETHParams(),
    # GPT-J: its hparams file (lr 0.2, ω 1, clamp 0.75); steps 20 as its baseline script runs it
    # (the file says 30)
    "EleutherAI/gpt-j-6B": PMETHParams(
        layers=(3, 4, 5, 6, 7, 8), steps=20, lr=0.2, kl_factor=1.0, clamp_norm=0.75, mom2_weight=15000.0
    ),
    "meta-llama/Meta-Llama-3-8B": PMETHParams(layers=(4, 5, 6, 7, 8), weight_decay=0.5, mom2_weight=15000.0),
    "EleutherAI/gpt-neox-20b": PMETHParams(layers=(13, 14, 15, 16), mom2_weight=15000.0),
    "meta-llama/Llama-2-13b-hf": PMETHParams(layers=(7, 8, 9), weight_decay=0.5, mom2_weight=15000.0),
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": PMETHParams(
        layers=(3, 4, 5), weight_decay=0.5, mom2_weight=20000.0
    ),
    "gpt2-xl": PMETHParams(layers=(13, 14, 15, 16, 17), mom2_weight=20000.0),  # MEMIT's GPT-2-XL range
}


def preset(model: Model) -> PMETHParams:
    return _range_preset(model, PRESETS, PMETHParams())


def compute_pmet(model: Model, case: EditCase, hp: PMETHParams | None = None) -> Edit:
    """Compute (never apply) the PMET edit for ``case``. See the module docstring."""
    hp = hp or preset(model)
    last = max(hp.layers)
    return compute_range_edit(
        model,
        case,
        hp,
        opt_sites=[("attn_out", last), ("mlp_out", last)],
        value_site=("mlp_out", last),
        divisor=square_root,
        editor="pmet",
        pmet_schedule=True,
    )
