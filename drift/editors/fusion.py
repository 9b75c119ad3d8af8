"""Fusing an update into the weights sparsely: drop-and-rescale and top-k retention (AdaPLE paper §3.2, §4).

Both take an :class:`~drift.editors.base.Edit` and return a new one; the original is untouched and
nothing is applied. Any editor's output can be fused this way before it is applied.

- :func:`drop_and_rescale`: each entry of each delta is kept with probability 1 − p (a seeded
  Bernoulli mask) and the kept ones are multiplied by 1/(1 − p), so the expected update is the
  original one while most entries are zero.
- :func:`top_k_retain`: each delta keeps only its ``fraction`` of entries largest in magnitude.

Example:
    >>> import torch
    >>> from drift.editors.base import Edit, WeightDelta
    >>> edit = Edit([WeightDelta("W_out", 0, torch.ones(100, 10))])
    >>> fused = drop_and_rescale(edit, p=0.8, seed=0)
    >>> d = fused.deltas[0].delta
    >>> sorted({round(float(v), 4) for v in d.unique()})
    [0.0, 5.0]
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import torch

from drift.editors.base import Edit


def drop_and_rescale(edit: Edit, p: float, seed: int = 0) -> Edit:
    """Drop each entry with probability ``p`` and rescale the rest by 1/(1 − p); seeded."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop rate p must be in [0, 1), got {p}")
    deltas = []
    for i, d in enumerate(edit.deltas):
        g = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + i)
        keep = torch.rand(d.delta.shape, generator=g) >= p
        deltas.append(replace(d, delta=d.delta * keep.to(d.delta.device, d.delta.dtype) / (1.0 - p)))
    return Edit(deltas, {**edit.info, "fusion": {"drop_and_rescale": p, "seed": seed}})


def case_seed(case_id, seed: int = 0) -> int:
    """A mask seed for one edit: ``seed`` mixed with the case id, so stacked edits get independent
    masks (the point of the fusion) while rerunning a case gives the same one."""
    salt = int.from_bytes(hashlib.sha256(str(case_id).encode()).digest()[:4], "little")
    return seed * 7919 + salt


def top_k_retain(edit: Edit, fraction: float) -> Edit:
    """Keep, in each delta, the ``fraction`` of entries largest in magnitude; zero the rest."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"retained fraction must be in (0, 1], got {fraction}")
    deltas = []
    for d in edit.deltas:
        flat = d.delta.flatten()
        k = max(1, round(fraction * flat.numel()))
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[flat.abs().topk(k).indices] = True
        deltas.append(replace(d, delta=(flat * keep).view_as(d.delta)))
    return Edit(deltas, {**edit.info, "fusion": {"top_k": fraction}})


def pairwise_cosine(edits: list[Edit]) -> torch.Tensor:
    """Cosine similarity ``[n, n]`` between the updates of ``n`` edits, each flattened over all of
    its deltas (AdaPLE paper Fig. 3: redundant updates are similar; dropped ones much less)."""
    if not edits:
        raise ValueError("pairwise_cosine needs at least one edit")
    flat = torch.stack([torch.cat([d.delta.detach().flatten().float() for d in e.deltas]) for e in edits])
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return flat @ flat.T
