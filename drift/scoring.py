"""Probability of a target continuation, batched.

P(target | prompt) for a multi-token target is the product of each target token's conditional
probability given the prompt and the target tokens before it. All (prompt, target) pairs go
through the model in right-padded batches: one forward per batch, never one per prompt.

Example:
    >>> import drift
    >>> model = drift.load_model()                                           # doctest: +SKIP
    >>> lp = target_logprobs(model, ["The Eiffel Tower is located in the city of"], ["Paris"])
    >>> lp.exp()                                                             # doctest: +SKIP
    tensor([0.7016])
    >>> s = score_targets(model, ["The Eiffel Tower is in"] * 2, ["Paris", "Paris, France"])
    >>> bool(s.logprob[1] < s.logprob[0])                # a product of more token probabilities
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from drift.adapter import Hook, Model


@dataclass
class Scores:
    """Per (prompt, target) pair, each a tensor ``[n]``.

    ``logprob``: log P of the whole target; ``top1``: whether the target's first token is the
    model's most likely next token; ``token_acc``: the fraction of target tokens that are the
    most likely token under teacher forcing; ``n_tokens``: the target's length in tokens.
    """

    logprob: Tensor
    top1: Tensor
    token_acc: Tensor
    n_tokens: Tensor


def score_targets(
    model: Model,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    hooks: Sequence[Hook] = (),
    batch_size: int = 32,
) -> Scores:
    """Score each ``targets[i]`` after ``prompts[i]`` (see module docstring).

    A pair needs the sequence ``prompt + target[:-1]``; when that sequence is a prefix of
    another pair's (the same prompt with a one-token target, say), it is read off the longer
    one's forward instead of getting its own. Only positions that predict a target token are
    unembedded.
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    pairs = [(model.encode(p), model.encode_target(t)) for p, t in zip(prompts, targets)]
    seqs = sorted({tuple(p + t[:-1]) for p, t in pairs})
    # In sorted order a sequence that prefixes any other prefixes its successor; chain to the end.
    carrier = list(range(len(seqs)))
    for i in range(len(seqs) - 2, -1, -1):
        if seqs[i + 1][: len(seqs[i])] == seqs[i]:
            carrier[i] = carrier[i + 1]
    index = {s: carrier[i] for i, s in enumerate(seqs)}
    # Every scored token: (pair, carrier sequence, position that predicts it, token id).
    reads = [
        (k, index[tuple(p + t[:-1])], len(p) - 1 + j, tok)
        for k, (p, t) in enumerate(pairs)
        for j, tok in enumerate(t)
    ]
    tok_lp = torch.empty(len(reads))
    hit = torch.empty(len(reads))
    by_carrier: dict[int, list[int]] = {}
    for r, (_, c, _, _) in enumerate(reads):
        by_carrier.setdefault(c, []).append(r)
    carriers = sorted(by_carrier, key=lambda c: len(seqs[c]))  # similar lengths batch together
    for start in range(0, len(carriers), batch_size):
        chunk = carriers[start : start + batch_size]
        mine = [r for c in chunk for r in by_carrier[c]]
        row_of = {c: b for b, c in enumerate(chunk)}
        lp, h = _score_batch(
            model,
            [seqs[c] for c in chunk],
            [(row_of[reads[r][1]], reads[r][2], reads[r][3]) for r in mine],
            hooks,
        )
        tok_lp[mine], hit[mine] = lp, h
    owner = torch.tensor([r[0] for r in reads])
    first = torch.tensor([j == 0 for k, (p, t) in enumerate(pairs) for j in range(len(t))])
    n_tokens = torch.tensor([len(t) for _, t in pairs])
    return Scores(
        logprob=torch.zeros(len(pairs)).index_add_(0, owner, tok_lp),
        top1=hit[first].bool(),
        token_acc=torch.zeros(len(pairs)).index_add_(0, owner, hit) / n_tokens,
        n_tokens=n_tokens,
    )


def target_logprobs(model: Model, prompts: Sequence[str], targets: Sequence[str], **kw) -> Tensor:
    """log P(targets[i] | prompts[i]) as a tensor ``[n]``."""
    return score_targets(model, prompts, targets, **kw).logprob


@torch.no_grad()
def _score_batch(
    model: Model, seqs: list[tuple[int, ...]], reads: list[tuple[int, int, int]], hooks: Sequence[Hook]
) -> tuple[Tensor, Tensor]:
    """For reads ``(row, position, token)``: log P(token) at that position and whether it is top-1."""
    tokens, _ = model.pad(seqs)
    rows = torch.tensor([r for r, _, _ in reads])
    cols = torch.tensor([c for _, c, _ in reads])
    tgt = torch.tensor([t for _, _, t in reads])
    logits = model.logits_at(tokens, rows, cols, hooks)  # [n_reads, d_vocab]
    logp = logits.float().log_softmax(-1).cpu()
    if not torch.isfinite(logp).all():
        raise FloatingPointError(
            "the model produced NaN or inf logits: a score from them would be meaningless (are its "
            "weights damaged? drift.store.cache_root() holds the converted default model)"
        )
    return logp[torch.arange(len(reads)), tgt], (logp.argmax(-1) == tgt).float()
