"""The optimisation's key-value prefix: running only the columns from the subject's last token on
computes the same δ, losses and keys as running every column (up to float rounding)."""

from __future__ import annotations

import pytest
import torch

from drift.data import load_cases
from drift.editors.context import prefix_groups
from drift.editors.objectives import default_terms
from drift.editors.rome import ROME_CONTEXT
from drift.editors.sadr import SADR
from drift.editors.target import left_aligned, optimise_targets


@pytest.fixture(scope="module")
def tiny4():
    from drift.tiny import tiny_bridge

    return tiny_bridge(seed=3, n_layers=4)


@pytest.mark.parametrize(
    "sites, extra, awd",
    [
        ([("mlp_out", 1)], (), False),  # ROME
        ([("attn_out", 2), ("mlp_out", 2)], (SADR(1.0), SADR(1.0, "all")), False),  # PMET + SADR
        ([("resid_post", 2)], (), True),  # MEMIT's site, no gradient through attention weights
    ],
)
def test_prefix_cache_gives_the_full_forwards_deltas_losses_and_keys(tiny4, sites, extra, awd):
    assert tiny4.supports_prefix
    case = load_cases("builtin")[1]
    prefixes = [p for g in prefix_groups(tiny4, ROME_CONTEXT, 0) for p in g]
    runs = {}
    for cached in (False, True):
        terms = [*default_terms(0.0625, 0.5), *extra]
        runs[cached] = optimise_targets(
            tiny4,
            case,
            sites,
            terms,
            prefixes=prefixes,
            steps=6,
            early_stop=0,
            key_layers=[sites[0][1]],
            block_attention_grad=awd,
            prefix_cache=cached,
        )
    full, fast = runs[False], runs[True]
    assert len(full.losses) == len(fast.losses) == 6
    for s in full.deltas:
        assert full.deltas[s].norm() > 0
        torch.testing.assert_close(fast.deltas[s], full.deltas[s], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(fast.v0[s], full.v0[s])
    for a, b in zip(full.losses, fast.losses):
        assert a.keys() == b.keys()
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-8), k
    for layer in full.keys:
        torch.testing.assert_close(fast.keys[layer], full.keys[layer])
    if extra:
        assert any(l["sadr"] > 0 for l in fast.losses[1:])  # the restraint really ran on cached columns


def test_left_alignment_puts_every_subject_in_one_column(tiny4):
    from drift.editors.target import build_batch

    case = load_cases("builtin")[0]
    batch, _, _ = build_batch(tiny4, case, ["", "Because of this. ", "I"], 1)
    tokens, mask, positions, P = left_aligned(batch, tiny4.pad_id)
    for b in range(tokens.shape[0]):
        n, lookup = int(batch.lengths[b]), int(batch.lookup[b])
        real = tokens[b][mask[b].bool()]
        assert real.tolist() == batch.tokens[b, :n].tolist()
        assert int(positions[b, P]) == lookup and tokens[b, P] == batch.tokens[b, lookup]
