"""Probability of a target continuation, batched.

P(target | prompt) for a multi-token target is the product of each target token's conditional
probability given the prompt and the target tokens before it. A pair needs one sequence,
``prompt + target[:-1]``, and reads the target's log-probabilities at its last ``len(target)``
positions.

On a ``TransformerBridge`` the sequences are *packed* (:func:`pack`) into rows of at most
``row_tokens`` tokens, within which they form prefix trees: each shared beginning (a prompt
scored with two targets, the edit sentence in front of a case's distracting prompts) is stored
once, and a tree too large for a row is split where it branches. A block-diagonal, tree-shaped
attention mask lets each token attend to its own sequence's earlier tokens only, and position ids
restart with each sequence, so every token computes what it would alone. Only positions that
predict a target token are unembedded, once each. Elsewhere (a legacy ``HookedTransformer``, or
``hooks`` given, whose positions must mean what they say) the sequences go through right-padded
batches instead, a sequence that prefixes another read off the longer one's row.

Example:
    >>> import drift
    >>> model = drift.load_model()                                           # doctest: +SKIP
    >>> lp = target_logprobs(model, ["The Eiffel Tower is located in the city of"], ["Paris"])
    >>> lp.exp()                                                             # doctest: +SKIP
    tensor([0.7016])
    >>> s = score_targets(model, ["The Eiffel Tower is in"] * 2, ["Paris", "Paris, France"])
    >>> bool(s.logprob[1] < s.logprob[0])                # a product of more token probabilities
    True
    >>> rows = pack([(1, 2, 3), (1, 2, 4), (5,)], row_tokens=8)  # one row, 1 2 stored once
    >>> rows[0].tokens, rows[0].parent, rows[0].depth
    ([1, 2, 3, 4, 5], [-1, 0, 1, 1, -1], [0, 1, 2, 2, 0])
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch
from torch import Tensor

from drift.model.sites import Hook

# how a multi-token target's log-probabilities become one score (drift.evaluation.metrics uses both)
SCORINGS = ("mean", "product")

if TYPE_CHECKING:  # scoring runs a Model; the adapter imports this module only inside target_prob
    from drift.model.adapter import Model


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

    def __repr__(self) -> str:
        return f"Scores({len(self.logprob)} pairs: logprob, top1, token_acc, n_tokens)"


@dataclass
class Row:
    """One row of a forward: ``tokens`` with each token's ``parent`` (index in the row of the
    token before it in its sequence, -1 for a sequence's first) and ``depth`` (its position id).
    ``cols[s]``: the columns of sequence ``s``'s tokens. A right-padded row is the chain
    ``parent[i] = i - 1``."""

    tokens: list[int] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)
    cols: dict[tuple[int, ...], list[int]] = field(default_factory=dict)


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common beginning of ``a`` and ``b``."""
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n


def _tree_size(run: Sequence[tuple[int, ...]]) -> int:
    """Tokens in the prefix tree of ``run`` (sorted): in sorted order a sequence's longest common
    beginning with any earlier one is the one with the sequence just before it."""
    return len(run[0]) + sum(len(b) - _common(a, b) for a, b in zip(run, run[1:]))


def _units(run: list[tuple[int, ...]], depth: int, row_tokens: int) -> list[list[tuple[int, ...]]]:
    """Split ``run`` (sorted, sharing its first ``depth`` tokens) into runs whose trees fit in
    ``row_tokens``: a tree too large is split by the token at ``depth`` (each part then repeats
    the shared beginning), and neighbouring parts that fit together are joined again."""
    size = _tree_size(run)
    if size <= row_tokens or size == max(map(len, run)):  # fits, or one sequence and its prefixes
        return [run]
    groups: list[list[tuple[int, ...]]] = []
    for s in run:  # a sequence of length depth prefixes all the others: it joins the first group
        if groups and (len(s) <= depth or len(groups[-1][-1]) <= depth or groups[-1][-1][depth] == s[depth]):
            groups[-1].append(s)
        else:
            groups.append([s])
    if len(groups) == 1:
        return _units(run, depth + 1, row_tokens)
    out: list[list[tuple[int, ...]]] = []
    for g in groups:
        for u in _units(g, depth + 1, row_tokens):
            if out and _tree_size(out[-1] + u) <= row_tokens:
                out[-1] = out[-1] + u
            else:
                out.append(u)
    return out


def pack(seqs: Sequence[tuple[int, ...]], row_tokens: int) -> list[Row]:
    """Sequences (sorted, distinct) into prefix-tree rows of at most ``row_tokens`` tokens (a
    longer sequence gets a row of its own). The sorted sequences are cut into runs whose trees
    fit in a row (splitting a tree only where it is too large), and the runs go into rows first
    fit, largest first."""
    if not seqs:
        return []
    runs = sorted(_units(list(seqs), 0, row_tokens), key=_tree_size, reverse=True)
    rows: list[Row] = []
    for run in runs:
        n = _tree_size(run)
        row = next((r for r in rows if len(r.tokens) + n <= row_tokens), None)
        if row is None:
            row = Row()
            rows.append(row)
        prev: tuple[int, ...] = ()
        for s in run:
            common = _common(s, prev)
            cols = row.cols[prev][:common] if common else []
            for k in range(common, len(s)):
                row.parent.append(cols[k - 1] if k else -1)
                row.depth.append(k)
                cols.append(len(row.tokens))
                row.tokens.append(s[k])
            row.cols[s] = cols
            prev = s
    return rows


def score_targets(
    model: Model,
    prompts: Sequence[str],
    targets: Sequence[str],
    *,
    hooks: Sequence[Hook] = (),
    batch_size: int = 32,
    row_tokens: int = 192,
    packed: bool | None = None,
) -> Scores:
    """Score each ``targets[i]`` after ``prompts[i]`` (see module docstring).

    A forward takes ``batch_size`` right-padded rows, or packed rows of at most ``row_tokens``
    tokens (capped at the model's context) up to ``32 * batch_size`` tokens in all. ``packed``:
    ``None`` packs where the model allows it and no ``hooks`` are given; ``False`` pads.
    """
    if len(prompts) != len(targets):
        raise ValueError(f"{len(prompts)} prompts but {len(targets)} targets")
    pairs = [(model.encode(p), model.encode_target(t)) for p, t in zip(prompts, targets)]
    seqs = sorted({tuple(p + t[:-1]) for p, t in pairs})
    longest = max((len(s) for s in seqs), default=0)
    if longest > model.cfg.n_ctx:
        raise ValueError(f"a prompt of {longest} tokens exceeds the model's context of {model.cfg.n_ctx}")
    if packed is None:
        packed = not hooks and _packs(model)
    elif packed and (hooks or not _packs(model)):
        raise ValueError("packed rows need a TransformerBridge that accepts them, and no hooks")
    rows = pack(seqs, min(row_tokens, model.cfg.n_ctx)) if packed else _padded_rows(seqs)
    where = {s: (r, cols) for r, row in enumerate(rows) for s, cols in row.cols.items()}
    # Every scored token: (pair, row, column that predicts it, token id).
    reads = []
    for k, (p, t) in enumerate(pairs):
        r, cols = where[tuple(p + t[:-1])]
        reads += [(k, r, cols[len(p) - 1 + j], tok) for j, tok in enumerate(t)]
    tok_lp = torch.empty(len(reads))
    hit = torch.empty(len(reads))
    by_row: dict[int, list[int]] = {}
    for i, (_, r, _, _) in enumerate(reads):
        by_row.setdefault(r, []).append(i)
    order = sorted(by_row, key=lambda r: len(rows[r].tokens))  # similar lengths batch together
    for chunk in _batches([len(rows[r].tokens) for r in order], order, batch_size, packed):
        mine = [i for r in chunk for i in by_row[r]]
        row_of = {r: b for b, r in enumerate(chunk)}
        lp, h = _score_batch(
            model,
            [rows[r] for r in chunk],
            [(row_of[reads[i][1]], reads[i][2], reads[i][3]) for i in mine],
            hooks,
            packed,
        )
        tok_lp[mine], hit[mine] = lp, h
    owner = torch.tensor([r[0] for r in reads], dtype=torch.long)  # typed: no pairs is no reads
    first = torch.tensor([j == 0 for p, t in pairs for j in range(len(t))], dtype=torch.bool)
    n_tokens = torch.tensor([len(t) for _, t in pairs], dtype=torch.long)
    return Scores(
        logprob=torch.zeros(len(pairs)).index_add_(0, owner, tok_lp),
        top1=hit[first].bool(),
        token_acc=torch.zeros(len(pairs)).index_add_(0, owner, hit) / n_tokens,
        n_tokens=n_tokens,
    )


def target_logprobs(model: Model, prompts: Sequence[str], targets: Sequence[str], **kw) -> Tensor:
    """log P(targets[i] | prompts[i]) as a tensor ``[n]``."""
    return score_targets(model, prompts, targets, **kw).logprob


def target_prob(model: Model, prompt: str, target: str, scoring: str = "mean") -> float:
    """P(target | prompt) as drift's evaluation scores it (:mod:`drift.evaluation.metrics`): ``"mean"`` (the
    default) is exp of the mean log-probability per target token, which does not favour shorter
    targets and is the number ``evaluate`` and ``measure`` report for the same pair;
    ``scoring="product"`` is the whole target's probability, the product over its tokens. A
    convenience for one fact (``model.target_prob(prompt, target)`` calls it).

    Example:
        >>> p = target_prob(model, "The Eiffel Tower is in", "Paris, France")
        >>> whole = target_prob(model, "The Eiffel Tower is in", "Paris, France", scoring="product")
        >>> 0 < whole < p < 1 and p == model.target_prob("The Eiffel Tower is in", "Paris, France")
        True
    """
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    s = score_targets(model, [prompt], [target])
    lp = s.logprob / s.n_tokens if scoring == "mean" else s.logprob
    return float(lp.exp()[0])


def _batches(lengths: list[int], items: list[int], batch_size: int, packed: bool) -> list[list[int]]:
    """``items`` (ascending ``lengths``) in forwards: ``batch_size`` padded rows each, or as
    many packed rows as keep the padded forward within ``32 * batch_size`` tokens (at least one)."""
    if not packed:
        return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    out: list[list[int]] = []
    for n, item in zip(lengths, items):
        if out and n * (len(out[-1]) + 1) <= 32 * batch_size:
            out[-1].append(item)
        else:
            out.append([item])
    return out


def _padded_rows(seqs: Sequence[tuple[int, ...]]) -> list[Row]:
    """One row per sequence that prefixes no other; a sequence that does is read off the row of
    the next longer one (in sorted order a sequence that prefixes any other prefixes its
    successor)."""
    rows: list[Row] = []
    for i in range(len(seqs) - 1, -1, -1):
        s = seqs[i]
        if not rows or rows[-1].tokens[: len(s)] != list(s):
            n = len(s)
            rows.append(Row(list(s), list(range(-1, n - 1)), list(range(n))))
        rows[-1].cols[s] = list(range(len(s)))
    return rows


def tree_mask(rows: Sequence[Row], length: int) -> Tensor:
    """``[batch, 1, length, length]`` bool: a token attends to itself and its ancestors in its
    row's tree, a padding column to itself alone (a query with nothing to attend to would make
    NaN, which multiplying by a zero weight keeps)."""
    mask = torch.eye(length, dtype=torch.bool).repeat(len(rows), 1, 1)
    for b, row in enumerate(rows):
        for i, up in enumerate(row.parent):
            if up >= 0:
                mask[b, i] |= mask[b, up]
    return mask[:, None]


class _Done(Exception):
    """Raised by a recording hook once the last block's output is in hand."""


def _final_residual(model: Model, rows: Sequence[Row], hooks: Sequence[Hook], packed: bool) -> Tensor:
    """The residual stream after the last block, ``[batch, pos, d_model]``."""
    with torch.no_grad():
        tokens, _ = model.pad([row.tokens for row in rows])
        if not packed:
            return model.residual(tokens, hooks)
        n = tokens.shape[1]
        positions = torch.zeros(len(rows), n, dtype=torch.long)
        for b, row in enumerate(rows):
            positions[b, : len(row.depth)] = torch.tensor(row.depth)
        box: list[Tensor] = []

        def grab(act: Tensor, hook) -> None:
            box.append(act)
            raise _Done

        name = model.hook_name("resid_post", model.cfg.n_layers - 1)
        try:
            with model.hooks([(name, grab)]):
                model.hooked(
                    tokens,
                    attention_mask=tree_mask(rows, n).to(model.device),
                    position_ids=positions.to(model.device),
                )
        except _Done:
            return box[0]
        raise RuntimeError(f"hook {name} did not fire")


# a token's log-probability below this is a probability of 0 (exp underflows even in float64):
# logits that far apart come from damaged weights, never from a trained (or edited) model
LOGPROB_FLOOR = -700.0


def _score_batch(
    model: Model, rows: list[Row], reads: list[tuple[int, int, int]], hooks: Sequence[Hook], packed: bool
) -> tuple[Tensor, Tensor]:
    """For reads ``(row, column, token)``: log P(token) at that column and whether it is top-1.
    A column read by several targets is unembedded once."""
    with torch.no_grad():
        resid = _final_residual(model, rows, hooks, packed)
        at = torch.tensor([[r, c] for r, c, _ in reads])
        spots, which = at.unique(dim=0, return_inverse=True)
        spots = spots.to(resid.device)
        logp = (
            model.logits_from(resid[spots[:, 0], spots[:, 1]]).float().log_softmax(-1)
        )  # [n_spots, d_vocab]
        tgt = torch.tensor([t for _, _, t in reads], device=logp.device)
        which = which.to(logp.device)
        picked = logp[which, tgt]
        # a NaN logit makes its whole row NaN, an inf one the row's other entries -inf or NaN
        if not torch.isfinite(picked).all():
            raise FloatingPointError(
                "the model produced NaN or inf logits: a score from them would be meaningless (are its "
                "weights damaged? `python -m drift doctor` checks the cache)"
            )
        if (picked < LOGPROB_FLOOR).any():
            raise FloatingPointError(
                f"the model gives a target token a probability of 0 (log-probability "
                f"{float(picked.min()):.3g}): its logits are out of any trained range, so a score from "
                "them would be meaningless (are its weights damaged? `python -m drift doctor` checks "
                "the cache)"
            )
        return picked.cpu(), (logp.argmax(-1)[which] == tgt).float().cpu()


_PACKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _packs(model: Model) -> bool:
    """Whether ``model`` honours a packed row: a ``TransformerBridge`` that takes a 4D attention
    mask and position ids, checked once per hooked model on three small sequences (two sharing a
    beginning) against each one's own forward (a check on weights that make NaN is not kept)."""
    if model.kind != "bridge":
        return False
    known = _PACKS.get(model.hooked)
    if known is None:
        v = model.cfg.d_vocab
        first = tuple((7 * i + 3) % v for i in range(5))
        seqs = sorted(
            [
                first,
                first[:2] + tuple((11 * i + 5) % v for i in range(3)),
                tuple((13 * i + 2) % v for i in range(3)),
            ]
        )
        (row,) = pack(seqs, 64)
        packed = _final_residual(model, [row], (), True)[0]
        alone = [model.residual(torch.tensor([s], device=model.device))[0] for s in seqs]
        known = all(torch.allclose(packed[row.cols[s]], a, rtol=1e-3, atol=1e-3) for s, a in zip(seqs, alone))
        if torch.isfinite(packed).all() and all(torch.isfinite(a).all() for a in alone):
            _PACKS[model.hooked] = known  # a model whose weights make NaN now is asked again later
    return known
