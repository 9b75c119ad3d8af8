"""Target probabilities: batched equals one at a time; multi-token product; prefix sharing."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drift.scoring import score_targets

PROMPTS = [
    "The Eiffel Tower is located in",
    "The Eiffel Tower is located in",
    "Apple was founded by",
    "The capital of Japan is",
    "The capital of Japan is",
]
TARGETS = ["Paris", "the city of Rome", "Steve Jobs", "Tokyo", "Tokyo, and"]


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
