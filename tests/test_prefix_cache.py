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


def test_generated_prefixes_are_each_seed_words_top5_samples_cleaned(tiny):
    """ROME's context prefixes as the reference draws them, rebuilt here from TransformerLens's own
    sampling: per seed word, ``count // 5`` continuations to ``length`` tokens in all, top-k 5,
    seeded ``seed * 1000 + 100 * group + word``, decoded without special tokens, cleaned, then
    "<text>. "; a length the seed word already fills gives the word alone."""
    from drift.editors.context import SEED_WORDS, clean, generated_prefixes

    n = len(SEED_WORDS)
    groups = generated_prefixes(tiny, [(1, n), (10, 2 * n)], seed=11)
    assert groups[0] == [""] and groups[1] == [w + ". " for w in SEED_WORDS]
    expected = []
    for k, word in enumerate(SEED_WORDS):
        start = tiny.encode(word)
        torch.manual_seed(11 * 1000 + 100 * 1 + k)
        out = tiny.hooked.generate(
            torch.tensor([start] * 2), max_new_tokens=10 - len(start), do_sample=True, top_k=5,
            stop_at_eos=False, verbose=False,
        )  # fmt: skip
        assert out.shape[1] == 10
        texts = [clean(tiny.tokenizer.decode(row, skip_special_tokens=True)) for row in out]
        expected += [t.replace("{", "").replace("}", "") + ". " for t in texts]
    assert groups[2] == expected
    with pytest.raises(ValueError, match="need length ≥ 1 and a count that is a multiple of 5"):
        generated_prefixes(tiny, [(0, n)])


def test_fixed_prefixes_come_six_by_default_all_at_most_and_in_two_groups():
    from drift.editors.context import FIXED_PREFIXES, context_prefixes

    assert context_prefixes(None) == FIXED_PREFIXES[:6]
    assert context_prefixes(None, len(FIXED_PREFIXES)) == FIXED_PREFIXES
    with pytest.raises(ValueError, match=f"at most {len(FIXED_PREFIXES)} fixed prefixes"):
        context_prefixes(None, len(FIXED_PREFIXES) + 1)
    with pytest.raises(ValueError, match="at least one context prefix"):
        context_prefixes(None, 0)
    assert prefix_groups(None, None, 1) == [[""]]  # the bare prompt alone: no second group
    assert prefix_groups(None, None, 2) == [[""], FIXED_PREFIXES[1:2]]
    assert prefix_groups(None, None, 3) == [[""], FIXED_PREFIXES[1:3]]


def test_clean_joins_paragraphs_and_drops_the_end_of_text_marker(tiny):
    from drift.editors.context import ROME_CONTEXT, clean, generated_prefixes

    assert clean("ﬁrst line\n\nsecond<|endoftext|> end") == "first line second end"  # NFKD too
    assert generated_prefixes(tiny, ROME_CONTEXT) == generated_prefixes(tiny, ROME_CONTEXT, seed=0)


def test_another_prefix_seed_is_another_draw_cached_apart_and_another_run(tiny, tmp_path, monkeypatch):
    """ROME's ``prefix_seed`` (``--hp prefix_seed=1``): other sampled texts, cached under their
    own key (a rerun of either seed reads its own draw back), and another run configuration."""
    from drift.editors.context import generated_prefixes
    from drift.editors.rome import ROMEHParams, compute_rome
    from drift.options import EditorOptions, Options
    from drift.runs import run_config, run_key
    from tests.test_rome import CORPUS

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    first = generated_prefixes(tiny, ((4, 5),), seed=0)
    second = generated_prefixes(tiny, ((4, 5),), seed=1)
    assert first[0] == second[0] == [""] and first[1] != second[1]
    assert generated_prefixes(tiny, ((4, 5),), seed=0) == first  # each draw kept apart in the cache
    assert generated_prefixes(tiny, ((4, 5),), seed=1) == second
    assert len(list(tmp_path.rglob("*4x5-g0-s1*"))) == 1
    with pytest.raises(ValueError, match="prefix seed"):
        generated_prefixes(tiny, ((4, 5),), seed=-1)
    case = load_cases("builtin")[0]
    hp = dict(layer=1, steps=3, context=((4, 5),), stats_texts=CORPUS, early_stop=0)
    a = compute_rome(tiny, case, ROMEHParams(**hp))
    b = compute_rome(tiny, case, ROMEHParams(**hp, prefix_seed=1))
    assert not torch.allclose(a.deltas[0].delta, b.deltas[0].delta)  # the key averages other contexts
    seeded = EditorOptions(editor="rome", hp={"prefix_seed": 1})
    assert run_key(run_config(Options(editor=seeded))) != run_key(
        run_config(Options(editor=EditorOptions("rome")))
    )
