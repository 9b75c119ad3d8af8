"""The built-in cases are facts the default model knows before any edit."""

from __future__ import annotations

import pytest

from drift.data import load_cases
from drift.model.scoring import score_targets

pytestmark = pytest.mark.slow


def test_default_model_knows_the_builtin_facts(real):
    cases = load_cases("builtin")
    rewrite = [(c.prompt, t) for c in cases for t in (c.o_true, c.o_edit)]
    neigh = [(p.prompt, p.answer) for c in cases for p in c.neighborhood]
    rel = [(p.prompt, p.answer) for c in cases for p in c.relation]
    pairs = rewrite + neigh + rel
    s = score_targets(real, [p for p, _ in pairs], [t for _, t in pairs])
    lp = s.logprob[: len(rewrite)].view(-1, 2)
    knows = (lp[:, 0] > lp[:, 1]).float().mean().item()
    top_neigh = s.top1[len(rewrite) : len(rewrite) + len(neigh)].float().mean().item()
    top_rel = s.top1[len(rewrite) + len(neigh) :].float().mean().item()
    print(
        f"P(o_true) > P(o_edit): {knows:.1%}; neighbour top-1: {top_neigh:.1%}; relation top-1: {top_rel:.1%}"
    )
    assert knows >= 0.80
    assert top_neigh > 0.5
    assert top_rel > 0.5
