"""Tiny randomly initialised models for fast tests and examples, built offline.

``tiny_tokenizer()`` trains a small byte-level BPE tokenizer on a few built-in sentences (well
under a second). ``tiny_bridge()`` saves a 2-layer Llama-architecture model (grouped-query
attention, gated MLP, like the default model) with that tokenizer to a folder (``tiny_folder()``:
once, under drift's cache, with a stable name) and boots it through :func:`drift.load_model`, the
same path a real checkpoint takes; ``dtype=torch.bfloat16`` boots it in half precision.
``tiny_family(name)`` does the same for a tiny random model of each family drift is used on
(:data:`FAMILIES`: GPT-2, GPT-J, GPT-Neo, GPT-NeoX, Llama, Qwen2, Mistral, Gemma-2, Phi-3), each
with its family's own architecture at the same tiny sizes. ``tiny_legacy()`` builds a
legacy TransformerLens ≤ 3 ``HookedTransformer`` from a config (only where TL ≤ 3 is installed).

Example:
    >>> from drift.model.tiny import tiny_bridge
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
    from drift.util.store import building_dir, cache_root, verify_dir

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


def tiny_bridge(
    seed: int = 0,
    folder: str | Path | None = None,
    *,
    n_layers: int = 2,
    dtype: torch.dtype = torch.float32,
):
    """A tiny Llama-style model booted as a ``TransformerBridge``; returns a :class:`drift.Model`.

    Saved to ``folder`` when given, else to :func:`tiny_folder` (reused). The weights depend only
    on ``seed`` and ``n_layers``; they are saved in float32 and booted in ``dtype`` (e.g.
    ``torch.bfloat16``: the float32 weights rounded once, as a bf16 checkpoint would be)."""
    from drift.model.loading import load_model

    if folder is None:
        folder = tiny_folder(seed, n_layers=n_layers)
    else:
        Path(folder).mkdir(parents=True, exist_ok=True)
        _save_tiny(Path(folder), seed, n_layers)
    return load_model(str(folder), dtype=dtype)


# The families' names for the sizes every tiny model shares (d_model 32, 4 heads of 8, d_mlp 64,
# context 128, ``layers`` layers).
_GPT2_NAMES = {
    "d_model": "n_embd",
    "layers": "n_layer",
    "heads": "n_head",
    "d_mlp": "n_inner",
    "ctx": "n_positions",
}
_HF_NAMES = {
    "d_model": "hidden_size",
    "layers": "num_hidden_layers",
    "heads": "num_attention_heads",
    "d_mlp": "intermediate_size",
    "ctx": "max_position_embeddings",
}
_NEO_NAMES = _HF_NAMES | {"layers": "num_layers", "heads": "num_heads"}
_UNTIED = {"tie_word_embeddings": False}
_GQA = {"num_key_value_heads": 2, **_UNTIED}  # grouped-query attention: 2 key-value heads for 4

# Tiny random configurations of the model families drift is used on: family -> (transformers
# config class, its names for the sizes, what makes the family itself: rotary fraction, parallel
# attention and MLP, sliding windows, grouped queries, fused projections).
FAMILY_CONFIGS: dict[str, tuple[str, dict[str, str], dict]] = {
    "gpt2": ("GPT2Config", _GPT2_NAMES, {}),  # learned positions, tied embeddings
    "gptj": ("GPTJConfig", _GPT2_NAMES, {"rotary_dim": 4, **_UNTIED}),  # partial rotary, parallel
    "gpt_neo": ("GPTNeoConfig", _NEO_NAMES, {"window_size": 16}),  # global and local layers alternate
    "gpt_neox": ("GPTNeoXConfig", _HF_NAMES, {"rotary_pct": 0.25, "use_parallel_residual": True, **_UNTIED}),
    "llama": ("LlamaConfig", _HF_NAMES, _GQA),
    "qwen2": ("Qwen2Config", _HF_NAMES, _GQA),  # biases on q, k, v
    "mistral": ("MistralConfig", _HF_NAMES, {"sliding_window": 16, **_GQA}),
    "gemma2": (  # sliding and full layers alternate, soft-capped logits, tied embeddings
        "Gemma2Config",
        _HF_NAMES,
        {"num_key_value_heads": 2, "head_dim": 8, "sliding_window": 16, "query_pre_attn_scalar": 8},
    ),
    "phi3": ("Phi3Config", _HF_NAMES, {"original_max_position_embeddings": 128, **_GQA}),  # fused qkv
}
FAMILIES = tuple(FAMILY_CONFIGS)


def family_config(
    family: str, n_layers: int = 2, *, init_std: float = 0.02, vocab_size: int = 400, **settings
):
    """The tiny random configuration of ``family`` (a key of :data:`FAMILY_CONFIGS`): a
    transformers config object with d_model 32, 4 heads, d_mlp 64, context 128, ``n_layers``
    layers, weights initialised with standard deviation ``init_std``; ``settings`` (token ids
    …) go to the config as they are."""
    import transformers

    try:
        cls_name, names, extra = FAMILY_CONFIGS[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known: {list(FAMILY_CONFIGS)}") from None
    sizes = {"d_model": 32, "layers": n_layers, "heads": 4, "d_mlp": 64, "ctx": 128}
    kwargs = {names[k]: v for k, v in sizes.items()} | extra
    if family == "gpt_neo":  # one attention type per layer, as [[pattern, repeats]]
        kwargs["attention_types"] = [[["global", "local"], n_layers // 2]] + (
            [[["global"], 1]] if n_layers % 2 else []
        )
    return getattr(transformers, cls_name)(
        vocab_size=vocab_size, initializer_range=init_std, **kwargs, **settings
    )


def family_folder(family: str, seed: int = 0, *, n_layers: int = 2, init_std: float = 0.02) -> Path:
    """The Hugging Face folder of ``family``'s tiny random model with :func:`tiny_tokenizer`,
    saved once under ``cache_root()/tiny`` (``drift-tiny-{family}-s{seed}-l{n_layers}[-i{init_std}]``)
    and reused, like :func:`tiny_folder`."""
    from drift.util.store import building_dir, cache_root, verify_dir

    tag = "" if init_std == 0.02 else f"-i{init_std:g}"
    final = cache_root() / "tiny" / f"drift-tiny-{family}-s{seed}-l{n_layers}{tag}"
    if not verify_dir(final):
        with building_dir(final) as tmp:
            _save_family(tmp, family, seed, n_layers, init_std)
    return final


def _save_family(folder: Path, family: str, seed: int, n_layers: int, init_std: float) -> None:
    from transformers import AutoModelForCausalLM

    tok = tiny_tokenizer()
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = family_config(family, n_layers, init_std=init_std, vocab_size=len(tok), **ids)
    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(config).eval()
    hf.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))


def tiny_family(
    family: str,
    seed: int = 0,
    *,
    n_layers: int = 2,
    init_std: float = 0.02,
    dtype: torch.dtype = torch.float32,
):
    """``family``'s tiny random model (:func:`family_folder`) booted as a ``TransformerBridge``
    in ``dtype`` through :func:`drift.load_model`; returns a :class:`drift.Model`.

    Example:
        >>> m = tiny_family("gptj")
        >>> m.cfg.n_layers, m.cfg.d_mlp, m.weight("mlp_out", 0).shape
        (2, 64, torch.Size([64, 32]))
    """
    from drift.model.loading import load_model

    folder = family_folder(family, seed, n_layers=n_layers, init_std=init_std)
    return load_model(str(folder), dtype=dtype)


def placeholder_tokenizer(vocab_size: int):
    """:func:`tiny_tokenizer` grown to ``vocab_size`` ids with one placeholder token per id
    (``<w400>`` …), so that every id a model of that vocabulary samples decodes to a text that
    encodes back to that id: prompts built from its samples keep their token lengths."""
    tok = tiny_tokenizer()
    tok.add_tokens([f"<w{i}>" for i in range(len(tok), vocab_size)])
    return tok


def random_model(
    config,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    name: str | None = None,
    seed: int = 0,
):
    """A randomly initialised model of any size: ``config`` (a transformers config, e.g. GPT-J-6B's
    with fewer layers) built in ``dtype`` directly on ``device`` (no checkpoint on disk, no float32
    copy), booted as a ``TransformerBridge`` with :func:`placeholder_tokenizer`; returns a
    :class:`drift.Model` named ``name``. For timing and memory at a real width without weights
    (``benchmarks/bench.py width``); what it predicts means nothing."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from drift.model.adapter import Model

    torch.manual_seed(seed)
    with torch.device(device):
        hf = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    label = name or f"random-{config.model_type}"
    # TransformerLens rebuilds the tokenizer from its folder (``name_or_path``), as for
    # tiny_legacy: hand it one loaded from a folder, which can go once the bridge is built.
    with tempfile.TemporaryDirectory(prefix="drift-random-tok-") as folder:
        placeholder_tokenizer(config.vocab_size).save_pretrained(folder)
        tok = AutoTokenizer.from_pretrained(folder)
        bridge = TransformerBridge.boot_transformers(
            label, hf_model=hf, tokenizer=tok, device=str(device), dtype=dtype
        )
    bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    return Model(bridge, prepend_bos=False, name=label)


def tiny_legacy(seed: int = 0, *, n_layers: int = 2):
    """A tiny legacy ``HookedTransformer`` (TransformerLens ≤ 3) wrapped as a :class:`drift.Model`."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    from drift.model.adapter import Model

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
