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
    [('W_out', 0), ('W_out', 1)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from drift.data import EditCase
from drift.editors.base import Edit
from drift.editors.memit import MEMITHParams, checked_layers, compute_range_edits
from drift.editors.memit import preset as _range_preset
from drift.editors.spread import Solver, keep_old, square_root
from drift.model.adapter import Model


@dataclass(frozen=True)
class PMETHParams(MEMITHParams):
    clamp_norm: float = (
        4.0  # each component vector within 4·‖its original output‖ (reference: TinyLlama, Llama)
    )


def preset(model: Model) -> PMETHParams:
    """``model``'s family's PMET settings (:mod:`drift.editors.presets`), else the defaults
    (SmolLM2-135M's: MEMIT's layers and λ, the reference's Llama-family clamp 4) scaled to its
    depth as :func:`drift.editors.memit.preset` does."""
    return _range_preset(model, "pmet", PMETHParams())


def compute_pmet(model: Model, case: EditCase, hp: PMETHParams | None = None) -> Edit:
    """Compute (never apply) the PMET edit for ``case``. See the module docstring."""
    return compute_pmet_many(model, [case], hp)[0]


def compute_pmet_many(model: Model, cases: Sequence[EditCase], hp: PMETHParams | None = None) -> list[Edit]:
    """Each case's PMET edit (none applied), their targets optimised together."""
    return pmet_range_edits(model, cases, hp or preset(model), editor="pmet")


def pmet_range_edits(
    model: Model, cases: Sequence[EditCase], hp: PMETHParams, *, editor: str, solve: Solver = keep_old
) -> list[Edit]:
    """PMET's layout, shared by AdaPLE: attention and MLP vectors at the last layer optimised
    under PMET's schedule, the MLP one spread with the square-root divisor, each layer's update
    from ``solve``."""
    last = checked_layers(model, hp.layers, editor)[-1]
    return compute_range_edits(
        model,
        cases,
        hp,
        opt_sites=[("attn_out", last), ("mlp_out", last)],
        value_site=("mlp_out", last),
        divisor=square_root,
        editor=editor,
        solve=solve,
        pmet_schedule=True,
    )
