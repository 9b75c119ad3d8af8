"""Context prefixes: short texts put before a rewrite prompt so an edit holds in many contexts.

ROME-style editors fit the target value on the rewrite prompt behind several prefixes and average
the key over them. The papers' reference code has the model write the prefixes itself: from each
of the seed words "The", "Therefore", "Because", "I", "You" it samples short continuations (top-k
5) of a given total length in tokens, and uses each as ``"<text>. "`` in front of the prompt,
together with the bare prompt. ROME asks for 10 texts of 5 tokens and 10 of 10 tokens (21
contexts with the bare one); MEMIT and PMET for 5 texts of 10 tokens (6 contexts).

:func:`generated_prefixes` does the same and returns the prefixes in *groups* (the bare prompt
first, then one group per ``(length, count)``), because MEMIT's key is a mean of group means.
The texts are sampled once per model and seed and cached. ``context_prefixes(model, n)``
gives a fixed, hand-written list instead (deterministic, no sampling).

Example:
    >>> context_prefixes(None, 3)
    ['', 'Here is a short fact. ', 'I read this in a book. ']
    >>> generated_prefixes(model, ((5, 10), (10, 10)))              # doctest: +SKIP
    [[''], ['The first time I. ', ...], ['Therefore, the team will be able to. ', ...]]
    >>> groups = generated_prefixes(model, ((5, 10), (10, 10)))     # ROME's contexts
    >>> [len(g) for g in groups], groups[0]
    ([1, 10, 10], [''])
    >>> all(p.startswith(SEED_WORDS) and p.endswith(". ") for g in groups[1:] for p in g)
    True
"""

from __future__ import annotations

from typing import Sequence

FIXED_PREFIXES = [
    "",
    "Here is a short fact. ",
    "I read this in a book. ",
    "Today we learn something. ",
    "The answer is simple. ",
    "Let me tell you. ",
    "Everyone knows this. ",
    "From the encyclopedia: ",
    "As noted before, ",
    "In other news, ",
    "A question came up. ",
]

SEED_WORDS = ("The", "Therefore", "Because", "I", "You")  # the reference code's seeds
ROME_CONTEXT = ((5, 10), (10, 10))  # (total tokens, count): ROME's context_template_length_params
MEMIT_CONTEXT = ((10, 5),)  # MEMIT's and PMET's


def clean(text: str) -> str:
    """A sampled text as the reference's generator returns it: NFKD-normalised, blank lines joined
    by a space, no end-of-text marker (special tokens are skipped when decoding)."""
    import unicodedata

    return unicodedata.normalize("NFKD", text).replace("\n\n", " ").replace("<|endoftext|>", "")


def context_prefixes(model, n: int = 6) -> list[str]:
    """``n`` fixed prefixes, the empty prefix first (the bare prompt is always one of the contexts)."""
    if n < 1:
        raise ValueError("at least one context prefix (the empty one) is needed")
    if n > len(FIXED_PREFIXES):
        raise ValueError(f"at most {len(FIXED_PREFIXES)} fixed prefixes; use generated prefixes for more")
    return FIXED_PREFIXES[:n]


def generated_prefixes(model, lengths: Sequence[Sequence[int]], seed: int = 0) -> list[list[str]]:
    """Prefix groups ``[[""], group₁, ...]``: for each ``(length, count)`` in ``lengths``, ``count``
    texts the model samples (top-k 5) from the seed words, ``count // 5`` per word, each ``length``
    tokens long including its seed word, cleaned as the reference does (:func:`clean`) and turned
    into ``"<text>. "`` (braces removed). Cached per model, lengths and seed (the cache key ends
    in ``-s{seed}``, so two draws never mix)."""
    from drift.editors.stats import cache_json_list

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"prefix seed must be a whole number ≥ 0, got {seed!r}")

    groups: list[list[str]] = [[""]]
    for g, (length, count) in enumerate(lengths):
        if length < 1 or count < len(SEED_WORDS) or count % len(SEED_WORDS):
            raise ValueError(
                f"context ({length}, {count}): need length ≥ 1 and a count that is a multiple of "
                f"{len(SEED_WORDS)} (one share per seed word)"
            )

        def sample(length=length, count=count, g=g) -> list[str]:
            import torch

            texts = []
            for k, word in enumerate(SEED_WORDS):
                start = model.encode(word)
                share = count // len(SEED_WORDS)
                if length <= len(start):  # the seed word alone fills the length
                    texts += [word] * share
                    continue
                rows = torch.tensor([start] * share)
                out = model.sample(rows, length - len(start), top_k=5, seed=seed * 1000 + 100 * g + k)
                texts += [clean(model.tokenizer.decode(row, skip_special_tokens=True)) for row in out]
            return texts

        texts = cache_json_list("prefixes", f"{length}x{count}-g{g}-s{seed}", model, count, sample)
        groups.append([t.replace("{", "").replace("}", "") + ". " for t in texts])
    return groups


def prefix_groups(model, context, n_prefixes: int, seed: int = 0) -> list[list[str]]:
    """The editor's context prefixes in groups, bare prompt first: ``n_prefixes`` fixed ones in
    one group when ``n_prefixes > 0``, else the reference's generated ``context`` groups drawn
    with ``seed`` (the editors' ``prefix_seed``: another seed is another draw of the texts,
    cached apart; the fixed prefixes take no seed)."""
    if n_prefixes > 0:
        fixed = context_prefixes(model, n_prefixes)
        return [fixed[:1]] + ([fixed[1:]] if len(fixed) > 1 else [])
    return generated_prefixes(model, context, seed)
