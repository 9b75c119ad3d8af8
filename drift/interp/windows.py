"""Layer windows and drift rows of a trace: where attention patching helps most, and each
prompt's attention drift summed over the layers that matter (``python -m drift trace``).

Example:
    >>> from types import SimpleNamespace
    >>> import torch
    >>> gain = torch.tensor([0.1, 0.3, 0.2, 0.2, 0.9])
    >>> s = SimpleNamespace(probs=torch.stack([gain, torch.zeros(5)], 1), edited=torch.zeros(2),
    ...                     vanilla=torch.ones(2))
    >>> best_window({"DNS": [s]}, full=3)[0]
    1
"""

from __future__ import annotations

import torch

from drift.interp.attention_drift import factors


def best_window(attention: dict, full: int | None = None) -> tuple[int, dict]:
    """The start layer whose attention patch raises P(o_true) most (mean over tasks), among the
    first ``full`` starts (the windows of all k layers; all starts for None), and the curves:
    per task, the mean patched ``probs`` [layers, 2], ``edited`` and ``vanilla`` [2] and ``n``."""
    curves, gains = {}, []
    for task, scans in attention.items():
        if not scans:
            continue
        probs = torch.stack([s.probs for s in scans]).mean(0)  # [layers, 2]
        edited = torch.stack([s.edited for s in scans]).mean(0)
        vanilla = torch.stack([s.vanilla for s in scans]).mean(0)
        curves[task] = {"probs": probs, "edited": edited, "vanilla": vanilla, "n": len(scans)}
        gains.append(probs[:, 0] - edited[0])
    start = int(torch.stack(gains).mean(0)[:full].argmax()) if gains else 0
    return start, curves


def drift_rows(drifts: dict, layers: range) -> dict:
    """Per task, one row per measured prompt: its case, P(o_edit), P(o_true), the drift factors
    summed over ``layers`` (:func:`drift.interp.attention_drift.factors`) and its KL per layer (heads
    summed), so that any other range can be summed afterwards. ``drifts``: per task, the
    ``(case_id, Drift)`` pairs of :func:`drift.interp.attention_drift.measure`."""
    return {
        task: [
            {
                "case_id": cid,
                "p_edit": d.p_edit,
                "p_true": d.p_true,
                **factors(d, layers),
                "kl_per_layer": d.kl.sum(-1).tolist(),  # [layers], heads summed
            }
            for cid, d in found
        ]
        for task, found in drifts.items()
    }
