"""What a TransformerLens 4 ``TransformerBridge`` over Hugging Face ``transformers`` 5 needs so that
drift's runs compute what a full forward pass computes. Private: :class:`drift.model.adapter.Model` calls
these, and nothing else should.

- :func:`route_cache_to_attention`: the key-value cache reaches every attention layer (so cached
  generation and :meth:`Model.prefix` condition on the whole prompt);
- :func:`quiet_cache_rename`: no warning about the cache's old keyword, which still works;
- :func:`decoder_list` and :func:`skipping_blocks_below`: ``start_at_layer`` runs only the blocks
  from that layer on;
- :class:`Prefix`: a left-aligned batch's unchanging first columns, kept as a Hugging Face
  key-value cache;
- :func:`own_modules`: a model loads with its own modules, none swapped for the Hub's kernels;
- :func:`draws_on_cpu`: seeded sampling draws the same tokens on a GPU as on the CPU.

Example:
    >>> from drift.model.tiny import tiny_bridge
    >>> bridge = tiny_bridge().hooked
    >>> bridge._drift_cache_routed                   # done once, when drift wrapped it
    True
    >>> parent, attr, blocks = decoder_list(bridge)
    >>> attr, len(blocks)                            # the Hugging Face decoder's list of blocks
    ('layers', 2)
    >>> with skipping_blocks_below(bridge, 1):
    ...     len(getattr(parent, attr))
    1
    >>> getattr(parent, attr) is blocks              # whole again afterwards
    True
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor


@dataclass
class Prefix:
    """The unchanging first ``n`` columns of a left-aligned batch, as keys and values at every
    layer (see :meth:`drift.model.adapter.Model.prefix`): later calls run only the columns after them."""

    n: int
    mask: Tensor  # [batch, n + rest]: 1 at real tokens, 0 at padding
    positions: Tensor  # [batch, rest]: position ids of the columns after the prefix
    cache: object  # the Hugging Face key-value cache, reset to the prefix before each use
    kv: list[tuple[Tensor, Tensor]]  # per layer [batch, kv_heads, n, d_head], detached

    def select(self, rows: Tensor) -> "Prefix":
        """The prefix of the batch's ``rows`` only (same cache object, reset before each use)."""
        kv = [(k[rows], v[rows]) for k, v in self.kv]
        return Prefix(self.n, self.mask[rows], self.positions[rows], self.cache, kv)

    def reset(self):
        """The cache, holding the prefix's keys and values only (a forward appends to it)."""
        for layer, (k, v) in zip(self.cache.layers, self.kv, strict=True):
            layer.keys, layer.values = k, v
        return self.cache

    def forward_kwargs(self) -> dict:
        """The keywords that make a bridge's forward read the prefix from the cache."""
        return {
            "attention_mask": self.mask,
            "position_ids": self.positions,
            "past_key_values": self.reset(),
            "use_cache": True,
        }


def new_cache():
    """An empty Hugging Face key-value cache for :meth:`drift.model.adapter.Model.prefix` to fill."""
    from transformers import DynamicCache

    return DynamicCache()


def kept_prefix(cache, n: int, mask: Tensor, positions: Tensor) -> Prefix:
    """A :class:`Prefix` of a ``cache`` filled by one pass: its first ``n`` columns, detached."""
    cache.crop(n - cache.get_seq_length())
    kv = [(l.keys.detach(), l.values.detach()) for l in cache.layers]
    return Prefix(n, mask, positions[:, n:], cache, kv)


def route_cache_to_attention(bridge) -> None:
    """Hand the key-value cache to each of a bridge's attention modules under the name it reads.

    Hugging Face ``transformers`` 5.x passes the cache to each attention module as ``cache``;
    TransformerLens 4.3's attention bridge reads only ``past_key_values`` (or ``layer_past``).
    Without this, every cached forward (``generate`` with ``use_past_kv_cache=True``, drift's
    sampler, :meth:`Model.prefix`) leaves the cache empty, so each new token is predicted from
    itself alone and ignores the prompt ("Paris-------" where a greedy loop of full passes
    gives "Paris, France."). A forward pre-hook on each attention module adds the name where it
    is missing; installed once per bridge, it stays for the bridge's lifetime.
    """
    if getattr(bridge, "_drift_cache_routed", False):
        return

    def pass_cache(module, args, kwargs):
        if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
            kwargs["past_key_values"] = kwargs["cache"]
        return args, kwargs

    for block in bridge.blocks:
        block.attn.register_forward_pre_hook(pass_cache, with_kwargs=True)
    # A plain forward then fills no cache (Hugging Face builds one by default, which the routing
    # would now fill at a cost in memory and time); generate and Model.prefix ask for one.
    config = getattr(getattr(bridge, "original_model", None), "config", None)
    if config is not None and hasattr(config, "use_cache"):
        config.use_cache = False
    bridge._drift_cache_routed = True


@contextlib.contextmanager
def quiet_cache_rename() -> Iterator[None]:
    """Silence transformers 5.x's warning that ``past_key_values`` is now called ``cache``: the
    bridge passes it by its old name, which still works."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated", category=FutureWarning)
        yield


def decoder_list(bridge) -> tuple[torch.nn.Module, str, torch.nn.ModuleList] | None:
    """``(parent, attribute, ModuleList)``: the wrapped Hugging Face model's list of decoder
    layers, whose entries are the bridge's blocks; ``None`` where there is no such list, or where
    the layers are of several types (attention types are then looked up by list index)."""
    hf = getattr(bridge, "original_model", None)
    blocks = getattr(bridge, "blocks", None)
    types = getattr(getattr(hf, "config", None), "layer_types", None)
    if hf is None or blocks is None or (types and len(set(types)) > 1):
        return None
    found = None
    for parent in hf.modules():
        for attr, child in parent.named_children():
            if (
                isinstance(child, torch.nn.ModuleList)
                and len(child) == len(blocks)
                and all(a is b for a, b in zip(child, blocks, strict=True))
            ):
                found = (parent, attr, child)
    return found


@contextlib.contextmanager
def skipping_blocks_below(bridge, start: int | None, found=None) -> Iterator[None]:
    """Make ``start_at_layer=start`` skip the blocks below ``start`` on a bridge.

    ``TransformerBridge`` injects the residual at block ``start`` but still runs blocks
    ``0..start-1`` (and discards their output). For the duration of the block the decoder's
    list (``found``, else :func:`decoder_list`) holds only blocks ``start..``, so nothing below
    is computed; it is whole again afterwards, also on an exception. Without such a list the
    bridge's own behaviour is kept."""
    found = found or (decoder_list(bridge) if start else None)
    if not start or found is None:
        yield
        return
    parent, attr, full = found
    setattr(parent, attr, torch.nn.ModuleList(list(full)[start:]))
    try:
        yield
    finally:
        setattr(parent, attr, full)


@contextlib.contextmanager
def own_modules() -> Iterator[None]:
    """Load models inside this: ``transformers`` 5 swaps some layers for fused kernels from the Hub
    while it loads a model (``USE_HUB_KERNELS``, on by default), which drift's hooks would not see
    inside, and it refuses to load at all where the ``kernels`` package is missing (a GPU machine
    with the image's own packages). The variable is set to ``0`` for the load and put back after.

    >>> with own_modules():
    ...     os.environ["USE_HUB_KERNELS"]
    '0'
    """
    before = os.environ.get("USE_HUB_KERNELS")
    os.environ["USE_HUB_KERNELS"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("USE_HUB_KERNELS", None)
        else:
            os.environ["USE_HUB_KERNELS"] = before


@contextlib.contextmanager
def draws_on_cpu() -> Iterator[None]:
    """Inside this, TransformerLens's ``generate`` (the bridge's and ``HookedTransformer``'s) draws
    each sampled token on the CPU, from the CPU's generator, whatever device the logits are on.
    Otherwise one seed draws other tokens on a GPU (CUDA's generator) than on the CPU, and so other
    context prefixes and other edits. On a CPU nothing changes: the same call with the same tensors.

    >>> import transformer_lens.utilities as tl_utils
    >>> with draws_on_cpu():
    ...     tl_utils.sample_logits.__name__
    'on_cpu'
    """
    import transformer_lens.utilities as tl_utils

    original = tl_utils.sample_logits

    def on_cpu(final_logits: Tensor, *args, **kwargs) -> Tensor:
        moved = {k: v.cpu() if isinstance(v, Tensor) else v for k, v in kwargs.items()}
        return original(final_logits.cpu(), *args, **moved).to(final_logits.device)

    tl_utils.sample_logits = on_cpu
    try:
        yield
    finally:
        tl_utils.sample_logits = original
