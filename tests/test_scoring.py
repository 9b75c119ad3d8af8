"""Target probabilities: batched equals one at a time; multi-token product; prefix sharing;
packed prefix-tree rows equal one full forward per pair."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drift.evaluation.metrics import SCORINGS, CasePlan
from drift.model.scoring import pack, score_targets

PROMPTS = [
    "The Eiffel Tower is located in",
    "The Eiffel Tower is located in",
    "Apple was founded by",
    "The capital of Japan is",
    "The capital of Japan is",
]
TARGETS = ["Paris", "the city of Rome", "Steve Jobs", "Tokyo", "Tokyo, and"]
DAMAGED = r"\(are its weights damaged\? `python -m drift doctor` checks the cache\)$"


def test_batched_equals_one_at_a_time(tiny):
    batched = score_targets(tiny, PROMPTS, TARGETS, batch_size=2)
    for i, (p, t) in enumerate(zip(PROMPTS, TARGETS)):
        single = score_targets(tiny, [p], [t])
        torch.testing.assert_close(batched.logprob[i], single.logprob[0], atol=1e-5, rtol=0)
        assert batched.top1[i] == single.top1[0]


def test_multi_token_target_is_product_of_conditionals(tiny):
    prompt, target = "Apple was founded by", "Steve Jobs"
    p_ids, t_ids = tiny.encode(prompt), tiny.encode_target(target)
    assert len(t_ids) > 1
    tokens, _ = tiny.pad([p_ids + t_ids])
    logp = tiny.forward(tokens)[0].log_softmax(-1)
    manual = sum(logp[len(p_ids) - 1 + j, t] for j, t in enumerate(t_ids))
    got = score_targets(tiny, [prompt], [target])
    torch.testing.assert_close(got.logprob[0], manual, atol=1e-5, rtol=0)
    first = logp[len(p_ids) - 1].argmax() == t_ids[0]
    assert bool(got.top1[0]) == bool(first)
    assert got.n_tokens[0] == len(t_ids)


def test_scores_are_log_probabilities(tiny):
    s = score_targets(tiny, PROMPTS, TARGETS)
    assert torch.isfinite(s.logprob).all() and (s.logprob <= 0).all()
    assert ((s.token_acc >= 0) & (s.token_acc <= 1)).all()


WORDS = [
    "the",
    "Eiffel",
    "Tower",
    "is",
    "in",
    "Paris",
    "Rome",
    "city",
    "of",
    "Apple",
    "founded",
    "by",
    "Steve",
    "Jobs",
]
text = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(text, text), min_size=1, max_size=5), batch_size=st.integers(1, 4))
def test_any_prompts_and_targets_score_as_the_full_forward_does(tiny, pairs, batch_size):
    """Property: for any prompts and targets (shared prefixes, repeats, any batch size), the batched
    scorer gives the product of the target tokens' conditionals from one full forward each."""
    prompts, targets = [p for p, _ in pairs], [t for _, t in pairs]
    got = score_targets(tiny, prompts, targets, batch_size=batch_size)
    for i, (p, t) in enumerate(pairs):
        p_ids, t_ids = tiny.encode(p), tiny.encode_target(t)
        logp = tiny.forward(torch.tensor([p_ids + t_ids]))[0].log_softmax(-1)
        manual = sum(float(logp[len(p_ids) - 1 + j, tok]) for j, tok in enumerate(t_ids))
        assert abs(float(got.logprob[i]) - manual) < 1e-4
        assert float(got.logprob[i]) <= 0 and int(got.n_tokens[i]) == len(t_ids)


# Ragged on purpose: one-token and many-token targets, a prompt scored with several targets, an
# "edit sentence" in front of other prompts, a prompt that is another pair's prompt + target.
EDIT = "The Eiffel Tower is located in the city of Rome."
RAGGED = [
    ("The Eiffel Tower is located in", "Paris"),
    ("The Eiffel Tower is located in", "the city of Rome, Italy"),
    ("The Eiffel Tower is located in the city of", "Paris"),
    (f"{EDIT} Apple was founded by", "Steve Jobs"),
    (f"{EDIT} Apple was founded by", "Rome"),
    (f"{EDIT} The capital of Japan is", "Tokyo, and the capital of Italy is Rome"),
    (f"{EDIT} Lionel Messi plays", "football"),
    ("Toko Yasuda produces the most amazing music on the", "guitar"),
    ("The official language of Brazil is", "Portuguese"),
    ("Danielle", "Darrieux's mother tongue is French"),
]


def one_pair_at_a_time(model, prompt: str, target: str) -> tuple[float, float, bool]:
    """(log P(target | prompt), fraction of target tokens that are the argmax, first one is):
    one full forward of prompt + target, the whole vocabulary at every position."""
    p_ids, t_ids = model.encode(prompt), model.encode_target(target)
    logp = model.forward(torch.tensor([p_ids + t_ids]))[0].double().log_softmax(-1)
    at = [len(p_ids) - 1 + j for j in range(len(t_ids))]
    hits = [int(logp[i].argmax()) == t for i, t in zip(at, t_ids)]
    return float(sum(logp[i, t] for i, t in zip(at, t_ids))), sum(hits) / len(hits), hits[0]


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("row_tokens,batch_size", [(192, 32), (24, 1), (40, 2)])
def test_fast_path_equals_per_prompt_loop_in_both_scorings(tiny, packed, row_tokens, batch_size):
    """Packed rows (small ``row_tokens`` splits shared prefixes across rows) and padded rows give,
    pair by pair, the probabilities of one forward per pair, whole-target and per-token mean, and
    the metrics computed from them agree under both scorings."""
    prompts, targets = [p for p, _ in RAGGED], [t for _, t in RAGGED]
    got = score_targets(tiny, prompts, targets, packed=packed, row_tokens=row_tokens, batch_size=batch_size)
    ref = [one_pair_at_a_time(tiny, p, t) for p, t in RAGGED]
    ref_lp = torch.tensor([lp for lp, _, _ in ref], dtype=torch.float64)
    n = torch.tensor([len(tiny.encode_target(t)) for t in targets])
    assert got.n_tokens.tolist() == n.tolist() and len(set(n.tolist())) > 3
    for scored, expected in ((got.logprob, ref_lp), (got.logprob / n, ref_lp / n)):  # product, mean
        assert (scored.double().exp() - expected.exp()).abs().max() <= 1e-5
        torch.testing.assert_close(scored.double(), expected, atol=1e-4, rtol=0)
    assert got.token_acc.tolist() == pytest.approx([acc for _, acc, _ in ref])
    assert got.top1.tolist() == [first for _, _, first in ref]
    plan = CasePlan(pairs=list(RAGGED))
    for right, wrong in ((0, 1), (3, 4), (5, 6), (8, 9)):
        plan.compare("NS", right, wrong)
    for scoring in SCORINGS:
        fast = plan.metrics(got.logprob, got.token_acc, got.n_tokens, scoring)
        slow = plan.metrics(ref_lp.float(), got.token_acc, n, scoring)
        assert fast == pytest.approx(slow, abs=1e-3)


seq = st.lists(st.integers(0, 3), min_size=1, max_size=12).map(tuple)


@settings(max_examples=200, deadline=None)
@given(seqs=st.lists(seq, min_size=1, max_size=12, unique=True), row_tokens=st.integers(1, 30))
def test_pack_keeps_every_sequence_and_its_tree(seqs, row_tokens):
    """Every sequence is in exactly one row, read back token by token along its parent chain with
    position ids 0, 1, ...; rows stay within ``row_tokens`` unless one sequence is longer; no
    row holds more tokens than its sequences have."""
    seqs = sorted(seqs)
    rows = pack(seqs, row_tokens)
    assert sorted(s for r in rows for s in r.cols) == seqs
    for row in rows:
        longest = max(len(s) for s in row.cols)
        assert len(row.tokens) <= max(row_tokens, longest)
        assert len(row.tokens) <= sum(len(s) for s in row.cols)
        for s, cols in row.cols.items():
            assert [row.tokens[c] for c in cols] == list(s)
            assert [row.depth[c] for c in cols] == list(range(len(s)))
            assert [row.parent[c] for c in cols] == [-1, *cols[:-1]]


def test_mismatched_prompts_and_targets_are_refused_naming_both_counts(tiny):
    with pytest.raises(ValueError, match="2 prompts but 1 targets"):
        score_targets(tiny, ["The capital of Japan is", "Apple was founded by"], ["Tokyo"])


def test_no_pairs_score_to_empty_tensors(tiny):
    s = score_targets(tiny, [], [])
    assert s.logprob.shape == (0,) and s.top1.shape == (0,) and s.token_acc.shape == (0,)
    assert s.n_tokens.dtype == torch.long


def test_tree_mask_lets_each_token_see_itself_and_its_ancestors_only():
    """Two sequences sharing their first token packed into one row (columns 0-1-2 and 0-3) and
    a padding column 4: the mask is [rows, 1, columns, columns], written out by hand."""
    from drift.model.scoring import Row, tree_mask

    row = Row(tokens=[7, 8, 9, 5, 0], parent=[-1, 0, 1, 0, -1], depth=[0, 1, 2, 1, 0])
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
            [1, 0, 0, 1, 0],
            [0, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    mask = tree_mask([row, Row(tokens=[3], parent=[-1], depth=[0])], 5)
    assert mask.shape == (2, 1, 5, 5)
    assert torch.equal(mask[0, 0], expected)
    assert torch.equal(mask[1, 0], torch.eye(5, dtype=torch.bool))  # a one-token row, padded


def test_a_packing_check_on_poisoned_weights_is_not_kept():
    """The one-time check that a model honours packed rows, made while its weights give NaN (a test
    or a diverged edit), answers no for now and is made again once the weights are sound."""
    from drift.model.scoring import _packs
    from drift.model.tiny import tiny_bridge

    model = tiny_bridge()
    w = model.weight("W_out", 0)
    saved = w.detach().clone()
    with torch.no_grad():
        w.fill_(float("nan"))
    assert not _packs(model)
    with torch.no_grad():
        w.copy_(saved)
    assert _packs(model)


def test_a_prompt_filling_the_context_exactly_is_scored_one_more_token_is_refused(tiny):
    target = " d"
    n = tiny.cfg.n_ctx - (len(tiny.encode_target(target)) - 1)  # prompt tokens that fill it exactly
    prompt = "a" * n
    assert len(tiny.encode(prompt)) == n
    assert torch.isfinite(score_targets(tiny, [prompt], [target]).logprob).all()
    with pytest.raises(
        ValueError, match=f"a prompt of {tiny.cfg.n_ctx + 1} tokens exceeds the model's context"
    ):
        score_targets(tiny, [prompt + "a"], [target])


def test_packed_rows_with_hooks_are_refused_naming_why(tiny):
    hook = (tiny.hook_name("resid_post", 0), lambda act, hook: act)
    with pytest.raises(
        ValueError, match="packed rows need a TransformerBridge that accepts them, and no hooks"
    ):
        score_targets(tiny, ["The capital of Japan is"], ["Tokyo"], hooks=[hook], packed=True)


def test_token_accuracy_is_the_share_of_target_tokens_that_are_the_argmax(tiny):
    """Teacher-forced token accuracy, counted by hand from one full forward, for the model's own
    greedy continuation (as text: re-tokenised, it keeps some of its argmax tokens) and for one with
    a token changed."""
    prompt = "The capital of Japan is"
    p = tiny.encode(prompt)
    greedy = tiny.sample(torch.tensor([p]), 3, top_k=1)[0, len(p) :].tolist()
    own = tiny.tokenizer.decode(greedy)
    other = tiny.tokenizer.decode(greedy[:1] + [greedy[1] + 1, greedy[2]])
    for target in (own, other):
        t = tiny.encode_target(target)
        logits = tiny.forward(torch.tensor([p + t[:-1]]))[0]
        hits = sum(int(logits[len(p) - 1 + j].argmax()) == tok for j, tok in enumerate(t))
        got = score_targets(tiny, [prompt], [target]).token_acc
        assert got.tolist() == pytest.approx([hits / len(t)])
    got = score_targets(tiny, [prompt], [own])
    assert 0 < got.token_acc.item() < 1 and got.n_tokens.item() > 1  # a share, not a count


def test_nan_logits_are_an_error_never_a_score(tiny):
    from drift.model.scoring import score_targets

    w = tiny.weight("mlp_out", 0)
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w[0, 0] = float("nan")
        with pytest.raises(
            FloatingPointError,
            match=r"^the model produced NaN or inf logits: a score from them would be meaningless " + DAMAGED,
        ):
            score_targets(tiny, ["The Eiffel Tower is in"], ["Paris"])
    finally:
        with torch.no_grad():
            w.copy_(saved)


def test_a_probability_of_zero_is_an_error_never_a_score(tiny):
    from drift.model.scoring import score_targets

    w = dict(tiny.hooked.named_parameters())["lm_head._original_component.weight"]
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w.mul_(1e25)  # damaged weights: finite logits, far out of any trained range
        with pytest.raises(
            FloatingPointError,
            match=r"^the model gives a target token a probability of 0 \(log-probability -\d\.\d\de\+\d+\): "
            r"its logits are out of any trained range, so a score from them would be meaningless " + DAMAGED,
        ):
            score_targets(tiny, ["The Eiffel Tower is in"], ["Paris"])
    finally:
        with torch.no_grad():
            w.copy_(saved)


def _full_logprob(model, prompt: str, target: str, hook=None) -> list[float]:
    """Each target token's log-probability from one unpadded forward (with ``hook`` on)."""
    p_ids, t_ids = model.encode(prompt), model.encode_target(target)
    hooks = [] if hook is None else [hook]
    with torch.no_grad():
        logp = model.forward(torch.tensor([p_ids + t_ids]), hooks)[0].log_softmax(-1)
    return [float(logp[len(p_ids) - 1 + j, t]) for j, t in enumerate(t_ids)]


def test_target_prob_is_the_product_or_the_per_token_mean(tiny):
    from drift.model.scoring import target_logprobs, target_prob

    prompt, target = "Apple was founded by", "Steve Jobs"
    each = _full_logprob(tiny, prompt, target)
    assert len(each) > 1
    product = torch.tensor(sum(each)).exp().item()
    assert target_prob(tiny, prompt, target, "product") == pytest.approx(product, rel=1e-4)
    mean = torch.tensor(sum(each) / len(each)).exp().item()
    assert target_prob(tiny, prompt, target) == pytest.approx(mean, rel=1e-4)  # the default
    assert target_prob(tiny, prompt, target, "mean") == pytest.approx(mean, rel=1e-4)
    got = target_logprobs(tiny, [prompt, "The capital of Japan is"], [target, "Tokyo"])
    want = [sum(each), sum(_full_logprob(tiny, "The capital of Japan is", "Tokyo"))]
    torch.testing.assert_close(got, torch.tensor(want), atol=1e-4, rtol=0)


def test_hooks_act_on_the_padded_forward_that_scores(tiny):
    """A hook given to scoring changes the scores exactly as it changes one full forward."""

    def ablate(act, hook):
        return act * 0.0

    hook = (tiny.hook_name("mlp_out", 0), ablate)
    got = score_targets(tiny, PROMPTS[:3], TARGETS[:3], hooks=[hook], packed=False)
    plain = score_targets(tiny, PROMPTS[:3], TARGETS[:3], packed=False)
    want = torch.tensor([sum(_full_logprob(tiny, p, t, hook)) for p, t in zip(PROMPTS[:3], TARGETS[:3])])
    torch.testing.assert_close(got.logprob, want, atol=1e-4, rtol=0)
    assert not torch.allclose(got.logprob, plain.logprob, atol=1e-3)
    from drift.model.scoring import target_logprobs  # which takes the same options

    same = target_logprobs(tiny, PROMPTS[:3], TARGETS[:3], hooks=[hook], packed=False)
    torch.testing.assert_close(same, want, atol=1e-4, rtol=0)
