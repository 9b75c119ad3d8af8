"""Context prefixes: short texts put before a rewrite prompt so an edit holds in many contexts.

ROME-style editors average the key over, and fit the target value on, the rewrite prompt behind
several prefixes. drift's default is a fixed list (deterministic and free); ``sampled=True``
instead asks the model for short continuations of generic openings (seeded, cached per model
through ``drift.editors.stats.sampled_corpus``).

Example:
    >>> context_prefixes(None, 3)
    ['', 'Here is a short fact. ', 'I read this in a book. ']
"""

from __future__ import annotations

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


def context_prefixes(model, n: int = 6, *, sampled: bool = False, seed: int = 0) -> list[str]:
    """``n`` prefixes, the empty prefix first (the bare prompt is always one of the contexts)."""
    if n < 1:
        raise ValueError("at least one context prefix (the empty one) is needed")
    if not sampled:
        if n > len(FIXED_PREFIXES):
            raise ValueError(f"at most {len(FIXED_PREFIXES)} fixed prefixes; use sampled=True for more")
        return FIXED_PREFIXES[:n]
    from drift.editors.stats import sampled_corpus

    texts = sampled_corpus(model, n_texts=n - 1, n_tokens=8, seed=seed)
    return [""] + [t.replace("\n", " ").strip() + ". " for t in texts]
