"""Drop-and-rescale and top-k retention of weight updates."""

from __future__ import annotations

import pytest
import torch

from drift.editors.base import Edit, WeightDelta
from drift.editors.fusion import case_seed, drop_and_rescale, pairwise_cosine, top_k_retain


def _edit():
    g = torch.Generator().manual_seed(0)
    return Edit(
        [
            WeightDelta("mlp_out", 0, torch.randn(200, 50, generator=g)),
            WeightDelta("mlp_out", 1, torch.randn(200, 50, generator=g)),
        ],
        {"editor": "x"},
    )


def test_drop_rate_rescale_and_expectation():
    edit = _edit()
    fused = drop_and_rescale(edit, 0.9, seed=1)
    d, orig = fused.deltas[0].delta, edit.deltas[0].delta
    kept = d != 0
    assert abs(kept.float().mean().item() - 0.1) < 0.01
    torch.testing.assert_close(d[kept], orig[kept] * 10)
    mean = torch.stack([drop_and_rescale(edit, 0.5, seed=s).deltas[0].delta for s in range(400)]).mean(0)
    assert (mean - orig).abs().mean() < 0.05 * orig.abs().mean() + 0.05
    assert fused.info["editor"] == "x" and edit.deltas[0].delta is orig  # the original edit is untouched


def test_drop_is_seeded_and_masks_differ_between_layers():
    a, b = drop_and_rescale(_edit(), 0.5, seed=3), drop_and_rescale(_edit(), 0.5, seed=3)
    assert all(torch.equal(x.delta, y.delta) for x, y in zip(a.deltas, b.deltas, strict=True))
    assert not torch.equal(a.deltas[0].delta != 0, a.deltas[1].delta != 0)
    assert torch.equal(drop_and_rescale(_edit(), 0.0).deltas[0].delta, _edit().deltas[0].delta)


def test_top_k_keeps_the_largest_entries():
    edit = _edit()
    fused = top_k_retain(edit, 0.2)
    d, orig = fused.deltas[0].delta, edit.deltas[0].delta
    assert int((d != 0).sum()) == 2000
    assert d.abs().max() == orig.abs().max() and orig.abs()[d == 0].max() <= d.abs()[d != 0].min()


@pytest.mark.parametrize(
    ("fn", "arg", "msg"),
    [
        (drop_and_rescale, 1.0, "drop rate p"),
        (drop_and_rescale, -0.1, "drop rate p"),
        (top_k_retain, 0.0, "retained fraction"),
    ],
)
def test_bad_rates_are_named(fn, arg, msg):
    with pytest.raises(ValueError, match=msg):
        fn(_edit(), arg)


def test_pairwise_cosine_of_updates_drops_after_drop_and_rescale():
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(200, 50, generator=g)
    edits = [
        Edit([WeightDelta("mlp_out", 0, shared + 0.3 * torch.randn(200, 50, generator=g))]) for _ in range(4)
    ]
    sim = pairwise_cosine(edits)
    assert sim.shape == (4, 4) and torch.allclose(sim.diagonal(), torch.ones(4))
    dropped = pairwise_cosine([drop_and_rescale(e, 0.9, seed=case_seed(i)) for i, e in enumerate(edits)])
    off = ~torch.eye(4, dtype=torch.bool)
    assert sim[off].min() > 0.9 and dropped[off].max() < 0.2


def test_the_masks_of_a_seed_are_fixed_so_committed_runs_reproduce():
    """The masks are part of a result (an AdaPLE run with p = 0.8 keeps these entries, and no
    others, on every machine and version): delta i of an edit takes its mask from a CPU generator
    seeded ``seed * 1_000_003 + i``; the default seed is 0; the edit records the rate and seed."""
    deltas = [WeightDelta("W_out", layer, torch.ones(3, 4)) for layer in (3, 4)]
    for seed, out in (
        (0, drop_and_rescale(Edit(deltas), 0.5)),
        (7, drop_and_rescale(Edit(deltas), 0.5, seed=7)),
    ):
        for i, d in enumerate(out.deltas):
            g = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + i)
            assert torch.equal(d.delta, (torch.rand(3, 4, generator=g) >= 0.5).float() * 2.0)
        assert not torch.equal(out.deltas[0].delta, out.deltas[1].delta)
        assert out.info["fusion"] == {"drop_and_rescale": 0.5, "seed": seed}


def test_a_case_seed_is_the_run_seed_mixed_with_the_case_ids_hash():
    """Stacked AdaPLE edits take their masks from these seeds: sha256 of the case id (its first 4
    bytes, little-endian) plus 7919 x the run's seed, default 0, so a rerun keeps every mask."""
    import hashlib

    for cid, seed in (("0", 0), ("1597", 0), ("1597", 3)):
        salt = int.from_bytes(hashlib.sha256(cid.encode()).digest()[:4], "little")
        assert case_seed(cid, seed) == seed * 7919 + salt
    assert case_seed("1597") == case_seed("1597", 0)


def test_top_k_keeps_at_least_one_entry_up_to_all_and_records_its_fraction():
    e = Edit([WeightDelta("W_out", 0, torch.tensor([[0.1, -3.0], [2.0, 0.5]]))])
    one = top_k_retain(e, 0.1)  # 0.4 entries round to none: the largest is kept anyway
    assert one.deltas[0].delta.tolist() == [[0.0, -3.0], [0.0, 0.0]]
    assert torch.equal(top_k_retain(e, 1.0).deltas[0].delta, e.deltas[0].delta)
    assert one.info["fusion"] == {"top_k": 0.1}
    with pytest.raises(ValueError, match="retained fraction must be in"):
        top_k_retain(e, 1.5)


def test_pairwise_cosine_of_small_updates_is_still_a_cosine():
    """Updates of norm 1e-3 (a small edit's ΔW) are normalised like any others: 1 on the diagonal."""
    g = torch.Generator().manual_seed(1)
    edits = [Edit([WeightDelta("W_out", 0, 1e-5 * torch.randn(10, 10, generator=g))]) for _ in range(3)]
    sim = pairwise_cosine(edits)
    assert torch.allclose(sim.diagonal(), torch.ones(3)) and sim.abs().max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="pairwise_cosine needs at least one edit"):
        pairwise_cosine([])
