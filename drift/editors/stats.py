"""Second-moment statistics of MLP keys, C = E[k kᵀ], per (model, layer), cached on disk.

ROME and MEMIT need C for the MLP key site (the input of ``W_out``) at each edited layer. It is
estimated from a text corpus in one batched pass that records every requested layer at once and
stops after the last of them, then saved atomically under ``cache_root()/stats``, keyed by
model, layer, corpus identity (a digest of the texts) and token count. A damaged file is detected
(digest check), warned about and rebuilt.

The default corpus works offline: texts the model samples itself from short generic openings
(seeded, cached as JSON). Pass your own ``texts`` to use a real corpus.

Example:
    >>> import drift
    >>> model = drift.load_model()                                    # doctest: +SKIP
    >>> C = key_second_moment(model, [4])[4]                          # doctest: +SKIP
    >>> C.shape                                                       # doctest: +SKIP
    torch.Size([1536, 1536])
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from typing import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from drift.adapter import Model
from drift.store import CorruptCacheError, cache_root, load_tensors, save_json, save_tensors

# Bumped whenever sampling changes what a corpus holds, so an older cached corpus is not reused.
# 2: sampled tokens attend to the whole prefix (version 1 was sampled with an empty key-value
# cache on transformers 5.x, each token seeing only itself; see Model._cache_reaches_attention).
CORPUS_VERSION = 2
OPENINGS = ["The", "In", "A", "It", "This", "He", "She", "When", "After", "We", "One", "Many"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-80:]


def sampled_corpus(model: Model, n_texts: int = 96, n_tokens: int = 48, seed: int = 0) -> list[str]:
    """Texts the model writes itself from generic openings; cached per model, size and seed."""
    path = cache_root() / "corpus" / f"{_slug(model.name)}-{n_texts}x{n_tokens}-s{seed}-v{CORPUS_VERSION}.json"
    if path.exists():
        try:
            texts = json.loads(path.read_text())
            if isinstance(texts, list) and len(texts) == n_texts and all(isinstance(t, str) for t in texts):
                return texts
        except json.JSONDecodeError:
            pass
        warnings.warn(f"drift: sampled corpus {path} is corrupt; sampling it again")
    # Openings of equal token length sample together in one batched call.
    starts = [model.encode(OPENINGS[i % len(OPENINGS)]) for i in range(n_texts)]
    texts: list[str] = []
    lengths = sorted({len(s) for s in starts})
    for k, n in enumerate(tqdm(lengths, desc="sampling corpus", leave=False)):
        rows = [s for s in starts if len(s) == n]
        out = model.sample(torch.tensor(rows), n_tokens, seed=seed * 1000 + k)
        texts += [model.tokenizer.decode(row[1 if model.prepend_bos else 0 :]) for row in out]
    save_json(path, texts)
    return texts


def corpus_id(texts: Sequence[str]) -> str:
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]


def key_second_moment(
    model: Model,
    layers: Sequence[int],
    texts: Sequence[str] | None = None,
    *,
    max_tokens: int = 64,
    batch_size: int = 16,
) -> dict[int, Tensor]:
    """C = E[k kᵀ] ``[d_mlp, d_mlp]`` of MLP keys for each layer, over every token of ``texts``
    (each cut to ``max_tokens``). Cached; computed in one pass for all missing layers."""
    texts = list(texts) if texts is not None else sampled_corpus(model)
    if not texts:
        raise ValueError("key statistics need at least one text")
    cid = corpus_id(texts)
    folder = cache_root() / "stats" / _slug(model.name)
    out: dict[int, Tensor] = {}
    missing = []
    for layer in layers:
        path = folder / f"mlp_key-L{layer}-{cid}-t{max_tokens}.safetensors"
        if path.exists():
            try:
                tensors, meta = load_tensors(path)
                out[layer] = tensors["C"].to(model.device)
                continue
            except CorruptCacheError as e:
                warnings.warn(f"drift: {e}; recomputing the key statistics")
        missing.append(layer)
    if missing:
        sums, count = _accumulate(model, missing, texts, max_tokens, batch_size)
        for layer in missing:
            C = sums[layer] / count
            meta = {"model": model.name, "layer": str(layer), "corpus": cid, "tokens": str(count)}
            save_tensors(folder / f"mlp_key-L{layer}-{cid}-t{max_tokens}.safetensors", {"C": C}, meta)
            out[layer] = C.to(model.device)
    return out


@torch.no_grad()
def _accumulate(model: Model, layers: list[int], texts: Sequence[str], max_tokens: int, batch_size: int):
    d = model.cfg.d_mlp
    sums = {l: torch.zeros(d, d, dtype=torch.float64) for l in layers}
    count = 0
    seqs = [model.encode(t)[:max_tokens] for t in texts]
    seqs = [s for s in seqs if s]
    for start in tqdm(range(0, len(seqs), batch_size), desc="key statistics", leave=False):
        chunk = seqs[start : start + batch_size]
        tokens, lengths = model.pad(chunk)
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None] < lengths[:, None]  # [batch, pos]
        keys: dict[int, Tensor] = {}

        def grab(act: Tensor, hook) -> None:
            layer = int(hook.name.split(".")[1])
            keys[layer] = act[mask].double().cpu()  # [n_real_tokens, d_mlp]

        hooks = [(model.hook_name("mlp_key", l), grab) for l in layers]
        model.residual(tokens, hooks, layer=max(layers))
        for l in layers:
            sums[l] += keys[l].T @ keys[l]
        count += int(mask.sum())
    return {l: s.float() for l, s in sums.items()}, count
