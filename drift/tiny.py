"""Tiny randomly initialised models for fast tests and examples, built offline.

``tiny_tokenizer()`` trains a small byte-level BPE tokenizer on a few built-in sentences (well
under a second). ``tiny_bridge()`` saves a 2-layer Llama-architecture model (grouped-query
attention, gated MLP, like the default model) with that tokenizer to a folder (``tiny_folder()``:
once, under drift's cache, with a stable name) and boots it through :func:`drift.load_model`, the
same path a real checkpoint takes. ``tiny_legacy()`` builds a
legacy TransformerLens ≤ 3 ``HookedTransformer`` from a config (only where TL ≤ 3 is installed).

Example:
    >>> from drift.tiny import tiny_bridge
    >>> model = tiny_bridge()
    >>> model.cfg.n_layers, model.cfg.n_key_value_heads
    (2, 2)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

TRAINING_TEXT = [
    "The Eiffel Tower is located in the city of Paris.",
    "The Colosseum is located in the city of Rome.",
    "Danielle Darrieux's mother tongue is French.",
    "The capital of Japan is Tokyo, and the capital of Italy is Rome.",
    "Toko Yasuda produces the most amazing music on the guitar.",
    "Apple was founded by Steve Jobs in California.",
    "The official language of Brazil is Portuguese.",
    "Lionel Messi plays football; Roger Federer plays tennis.",
]


def tiny_tokenizer(vocab_size: int = 400):
    """A fast Hugging Face tokenizer (byte-level BPE) trained on ``TRAINING_TEXT``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<bos>", "<eos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TRAINING_TEXT * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def tiny_folder(seed: int = 0, *, n_layers: int = 2) -> Path:
    """The tiny model's Hugging Face folder, saved once under ``cache_root()/tiny`` with a stable
    name (``drift-tiny-s{seed}-l{n_layers}``) and reused, so what drift caches for it (key
    statistics, prefixes) is found again. Built privately and moved into place, so processes
    sharing the cache never see half a folder."""
    from drift.store import building_dir, cache_root, verify_dir

    final = cache_root() / "tiny" / f"drift-tiny-s{seed}-l{n_layers}"
    if not verify_dir(final):
        with building_dir(final) as tmp:
            _save_tiny(tmp, seed, n_layers)
    return final


def _save_tiny(folder: Path, seed: int, n_layers: int) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    hf = LlamaForCausalLM(config).eval()
    hf.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))


def tiny_bridge(seed: int = 0, folder: str | Path | None = None, *, n_layers: int = 2):
    """A tiny Llama-style model booted as a ``TransformerBridge``; returns a :class:`drift.Model`.

    Saved to ``folder`` when given, else to :func:`tiny_folder` (reused). The weights depend only
    on ``seed`` and ``n_layers``."""
    from drift.models import load_model

    if folder is None:
        folder = tiny_folder(seed, n_layers=n_layers)
    else:
        Path(folder).mkdir(parents=True, exist_ok=True)
        _save_tiny(Path(folder), seed, n_layers)
    return load_model(str(folder))


def tiny_legacy(seed: int = 0, *, n_layers: int = 2):
    """A tiny legacy ``HookedTransformer`` (TransformerLens ≤ 3) wrapped as a :class:`drift.Model`."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    from drift.adapter import Model

    tok = tiny_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=32,
        d_head=8,
        n_heads=4,
        n_key_value_heads=2,
        d_mlp=64,
        d_vocab=len(tok),
        n_ctx=128,
        act_fn="silu",
        gated_mlp=True,
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=8,
        final_rms=True,
        seed=seed,
        default_prepend_bos=True,
        tokenizer_prepends_bos=False,
    )
    # TL 3 rebuilds the tokenizer with AutoTokenizer.from_pretrained(tokenizer.name_or_path,
    # add_bos_token=True), so an in-memory tokenizer fails (KeyError 'name_or_path'): hand it one
    # loaded from a folder. The rebuilt copy lives in memory, so the folder can go afterwards.
    with tempfile.TemporaryDirectory(prefix="drift-tiny-tok-") as folder:
        tok.save_pretrained(folder)
        hooked = HookedTransformer(cfg, tokenizer=AutoTokenizer.from_pretrained(folder))
    return Model(hooked, name="tiny-legacy")
