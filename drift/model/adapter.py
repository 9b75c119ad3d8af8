"""The one place that knows what differs between kinds of hooked model.

drift works on a TransformerLens 4 ``TransformerBridge`` (in compatibility mode) and on a legacy
TransformerLens ≤ 3 ``HookedTransformer``. Everything else in drift goes through :class:`Model`
for the four things that can differ:

- **hook names** for each :class:`~drift.model.sites.Site` (``drift.model.sites.HOOK_NAMES``: both
  kinds give TransformerLens' names, the bridge in compatibility mode);
- **config**: ``model.cfg`` is the hooked model's own TransformerLens config; ``model.sizes``
  holds the sizes drift reads (:class:`Arch`, under TransformerLens' names, with
  ``n_key_value_heads`` always a number);
- **tokenisation**: the model's BOS convention, the leading space of targets, where a subject's
  tokens sit in a prompt (by character offsets, so a subject that tokenises differently
  mid-sentence is still found), right padding of batches;
- **writable weights** editors change (``drift.model.sites.WEIGHTS``, one per
  :class:`~drift.model.sites.Weight`): MLP ``W_out`` as ``[d_mlp, d_model]`` and attention
  ``W_O`` as ``[n_heads, d_head, d_model]``, both views that write through to the model's own
  parameters.

Activations are read with :meth:`Model.record` (a TransformerLens ``ActivationCache`` of the
sites asked for) or :meth:`Model.capture` (one activation); hooks are attached by context managers
that always remove them. What a bridge over Hugging Face ``transformers`` needs on top lives in the
private ``drift.model._bridge``.

Right padding needs no attention mask for a causal model: a real token never attends to a pad
token that comes after it, so every real position computes exactly what it would unpadded.

Apart from drift's own verbs, a :class:`Model` is the TransformerLens model it wraps: any other
attribute (``to_str_tokens``, ``generate``, ``W_U``, ``blocks``, ``add_hook``, ``reset_hooks``,
``parameters``, ``.to(...)`` …) is the hooked model's, called with drift's BOS convention where
the call takes ``prepend_bos``, and a call that returns the hooked model returns the wrapper.

Example:
    >>> import drift
    >>> model = drift.load_model()                                # doctest: +SKIP
    >>> model.hook_name("mlp_key", 1)
    'blocks.1.mlp.hook_post'
    >>> model.cfg.n_layers, model.cfg.n_key_value_heads           # SmolLM2-135M: (30, 3)
    (2, 2)
    >>> model.to_str_tokens("The Eiffel Tower")                   # TransformerLens' verbs work too
    ['The', ' Ei', 'ff', 'el', ' To', 'wer']
    >>> model.weight("W_out", 1).shape                            # [d_mlp, d_model]
    torch.Size([64, 32])
    >>> model.record("The Eiffel Tower", ["mlp_out@0"])["mlp_out", 0].shape  # [batch, pos, d_model]
    torch.Size([1, 6, 32])
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
from torch import Tensor

from drift.model import _bridge
from drift.model._bridge import Prefix
from drift.model.scoring import target_prob
from drift.model.sites import HOOK_NAMES, WEIGHT_ALIASES, WEIGHTS, Hook, Site, Weight

if TYPE_CHECKING:
    from transformer_lens import ActivationCache

__all__ = ["Arch", "Hook", "Model", "Prefix", "HEAD_MODULES"]

# Both kinds share one hook name per site (compatibility mode gives the bridge TransformerLens'
# names: drift.model.sites.HOOK_NAMES) and one view per weight (drift.model.sites.WEIGHTS: the
# TransformerLens-oriented tensors, on the bridge views of the Hugging Face parameters).

# The modules that turn the last residual stream into logits, applied to chosen positions only.
HEAD_MODULES: tuple[str, str] = ("ln_final", "unembed")


class _Stop(Exception):
    """Raised by a recording hook to end a forward pass early."""


@dataclass(frozen=True)
class Arch:
    """Sizes of a model, read once from its TransformerLens config (``Model.sizes``), under the
    config's own names; ``n_key_value_heads`` is ``n_heads`` where the config leaves it ``None``
    (no grouped-query attention)."""

    n_layers: int
    n_heads: int
    n_key_value_heads: int  # < n_heads for grouped-query attention (SmolLM2: 3 for 9 heads)
    d_model: int
    d_mlp: int
    d_head: int
    n_ctx: int
    d_vocab: int

    @classmethod
    def of(cls, cfg) -> Arch:
        sizes = {f: getattr(cfg, f) for f in cls.__dataclass_fields__ if f != "n_key_value_heads"}
        return cls(n_key_value_heads=getattr(cfg, "n_key_value_heads", None) or cfg.n_heads, **sizes)


def _kind_of(hooked: object) -> str:
    try:
        from transformer_lens.model_bridge import TransformerBridge

        if isinstance(hooked, TransformerBridge):
            return "bridge"
    except ImportError:
        pass
    try:
        from transformer_lens import HookedTransformer  # TL <= 3

        if isinstance(hooked, HookedTransformer):
            return "legacy"
    except ImportError:
        pass
    raise TypeError(
        f"drift needs a TransformerLens TransformerBridge or HookedTransformer, got {type(hooked).__name__}"
    )


class Model:
    """A hooked TransformerLens model with drift's adapter around it.

    Args:
        hooked: a ``TransformerBridge`` (compatibility mode is switched on if it is off) or a
            legacy ``HookedTransformer``. It is put in eval mode and its parameters frozen.
        prepend_bos: whether prompts start with the BOS token. ``None``: what drift decided when
            it loaded this object (so wrapping a loaded model's ``.hooked`` again gives the same
            model), else the hooked model's ``cfg.default_prepend_bos``.
        name: a label for messages and cache keys (``None``: drift's label for an object it
            loaded, else ``cfg.model_name``).
    """

    def __init__(self, hooked, *, prepend_bos: bool | None = None, name: str | None = None):
        self.kind = _kind_of(hooked)
        if self.kind == "bridge" and not getattr(hooked, "compatibility_mode", True):
            hooked.enable_compatibility_mode(no_processing=True, disable_warnings=True)
        self.hooked = hooked.eval()
        for p in hooked.parameters():
            p.requires_grad_(False)
        if self.kind == "bridge":
            _bridge.route_cache_to_attention(hooked)
        cfg = hooked.cfg
        self.sizes = Arch.of(cfg)
        self.tokenizer = hooked.tokenizer
        if self.tokenizer is None:
            raise ValueError("the hooked model has no tokenizer; drift needs one to place subjects")
        known = getattr(hooked, "_drift_identity", {})  # set below when drift wrapped it before
        if prepend_bos is None:
            prepend_bos = known.get("prepend_bos", cfg.default_prepend_bos)
        self.prepend_bos = bool(prepend_bos)
        bos = self.tokenizer.bos_token_id
        self.bos_id = bos if bos is not None else self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        self.name = name or known.get("name") or getattr(cfg, "model_name", None) or type(hooked).__name__
        if not known:
            try:
                hooked._drift_identity = {"prepend_bos": self.prepend_bos, "name": self.name}
            except AttributeError:  # an object that refuses new attributes: wrapping again re-derives them
                pass
        # TransformerLens' own tokenisation (to_tokens, run_with_cache on strings) then agrees with
        # drift's: SmolLM2 was trained without a BOS token, which TL would otherwise prepend.
        cfg.default_prepend_bos = self.prepend_bos

    def __repr__(self) -> str:
        s = self.sizes
        return (
            f"drift.Model({self.name!r}, kind={self.kind}, layers={s.n_layers}, heads={s.n_heads}, "
            f"d_model={s.d_model}, prepend_bos={self.prepend_bos}, device={self.device}"
            + ("" if self.dtype == torch.float32 else f", dtype={str(self.dtype).removeprefix('torch.')}")
            + ")"
        )

    @property
    def cfg(self):
        """The hooked model's TransformerLens config (``n_layers``, ``d_model``, ``model_name``,
        ``device``, …). :attr:`sizes` holds the sizes drift reads, each a number."""
        return self.hooked.cfg

    @property
    def device(self) -> torch.device:
        return next(self.hooked.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The precision of the weights and of the forward pass (``torch.float32``,
        ``torch.bfloat16`` …; ``drift.load_model(..., dtype=)`` chooses it)."""
        return next(self.hooked.parameters()).dtype

    # ---- everything else is the hooked model's ------------------------------------------------
    def __getattr__(self, name: str):
        # Called only for names the wrapper itself lacks. Guarded so that copying or unpickling
        # (which look attributes up before __init__ has run) never recurse.
        hooked = self.__dict__.get("hooked")
        if hooked is None or name.startswith("__"):
            raise AttributeError(name)
        try:
            attr = getattr(hooked, name)
        except AttributeError:
            raise AttributeError(
                f"neither drift.Model nor the {type(hooked).__name__} it wraps has an attribute {name!r}"
            ) from None
        return self._as_own(attr) if inspect.ismethod(attr) else attr

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self.hooked)))

    def _as_own(self, method: Callable) -> Callable:
        """The hooked model's ``method``, called with ``prepend_bos=self.prepend_bos`` when it
        takes that argument and the caller gave none, returning this wrapper where the method
        returns the hooked model (``.to``, ``.eval``, ``.cuda`` …)."""
        try:
            sig = inspect.signature(method)
        except (TypeError, ValueError):
            sig = None
        takes_bos = sig is not None and "prepend_bos" in sig.parameters

        @functools.wraps(method)
        def call(*args, **kwargs):
            if takes_bos:
                bound = sig.bind_partial(*args, **kwargs)
                if bound.arguments.get("prepend_bos") is None:
                    bound.arguments["prepend_bos"] = self.prepend_bos
                    args, kwargs = bound.args, bound.kwargs
            out = method(*args, **kwargs)
            return self if out is self.hooked else out

        return call

    # ---- hook names -------------------------------------------------------------------------
    def hook_name(self, site: str | Site, layer: int | None = None) -> str:
        """The TransformerLens hook name of ``site`` at ``layer`` (see ``drift.model.sites.HOOK_NAMES``):
        ``hook_name("mlp_key", 4)``, or of a :class:`~drift.model.sites.Site`, a ``(kind, layer)``
        pair or a ``"kind@layer"`` string: ``hook_name("mlp_key@4")``."""
        if isinstance(site, str) and "@" in site:
            site = Site.parse(site)
        if isinstance(site, tuple):
            site, layer = site
        try:
            template = HOOK_NAMES[site]
        except KeyError:
            raise KeyError(f"unknown site {site!r}; known sites: {sorted(HOOK_NAMES)}") from None
        if "{layer}" in template:
            if layer is None or not 0 <= layer < self.cfg.n_layers:
                raise ValueError(f"site {site!r} needs a layer in [0, {self.cfg.n_layers}), got {layer}")
        return template.format(layer=layer)

    # ---- weights ----------------------------------------------------------------------------
    def weight(self, which: str | Weight, layer: int | None = None) -> Tensor:
        """A view of a weight editors change, writing through to the model's parameter.

        ``which`` is a :class:`~drift.model.sites.Weight` or its name: ``"W_out"`` (the MLP's output
        matrix, ``[d_mlp, d_model]``) or ``"W_O"`` (the attention's, ``[n_heads, d_head,
        d_model]``); the older names ``"mlp_out"`` and ``"attn_out"`` say the same.
        """
        if isinstance(which, tuple):
            which, layer = which
        try:
            path, _shape = WEIGHTS[WEIGHT_ALIASES.get(which, which)]
        except KeyError:
            raise KeyError(f"unknown weight {which!r}; known: {sorted(WEIGHTS)}") from None
        if layer is None or not 0 <= layer < self.cfg.n_layers:
            raise ValueError(f"layer {layer} out of range [0, {self.cfg.n_layers})")
        obj = self.hooked.blocks[layer]
        for part in path.split("."):
            obj = getattr(obj, part)
        tensor: Tensor = obj
        owners = {p.untyped_storage().data_ptr() for p in self.hooked.parameters()}
        if tensor.untyped_storage().data_ptr() not in owners:
            raise RuntimeError(
                f"{self.kind} model's {path} at layer {layer} is a copy, not a view: edits would be lost"
            )
        return tensor

    # ---- tokenisation -----------------------------------------------------------------------
    def encode(self, text: str, prepend_bos: bool | None = None) -> list[int]:
        """Token ids of a prompt, with BOS in front when the model expects it (or as
        ``prepend_bos`` says)."""
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        bos = self.prepend_bos if prepend_bos is None else prepend_bos
        return ([self.bos_id] if bos else []) + list(ids)

    def encode_target(self, target: str) -> list[int]:
        """Token ids of a continuation: stripped, then one leading space (targets follow a word)."""
        if not isinstance(target, str) or not target.strip():
            raise ValueError(f"empty target {target!r}: a target needs at least one non-space character")
        return list(self.tokenizer(" " + target.strip(), add_special_tokens=False).input_ids)

    def subject_positions(self, prompt: str, subject: str, *, start: int | None = None) -> list[int]:
        """Indices (in ``encode(prompt)``) of the tokens that overlap ``subject`` at character
        ``start`` (a template's slot, :meth:`drift.data.EditCase.subject_at`), or, without
        ``start``, at its last occurrence.

        Raises ``ValueError`` naming both strings when the subject is not in the prompt (or not
        at ``start``).
        """
        if not subject or not subject.strip():
            raise ValueError(f"empty subject {subject!r}")
        if start is not None and prompt[start : start + len(subject)] != subject:
            raise ValueError(f"subject {subject!r} is not at character {start} of prompt {prompt!r}")
        start = prompt.rfind(subject) if start is None else start
        if start < 0:
            hint = ""
            if prompt.lower().find(subject.strip().lower()) >= 0:
                hint = " (it appears with different case or spacing; pass the exact text)"
            raise ValueError(f"subject {subject!r} not found in prompt {prompt!r}{hint}")
        pos = self.span_positions(prompt, start, start + len(subject))
        if not pos:
            raise ValueError(f"subject {subject!r} covers no token of prompt {prompt!r}")
        return pos

    def span_positions(self, text: str, start: int, end: int) -> list[int]:
        """Indices (in ``encode(text)``) of the tokens overlapping characters ``[start, end)``."""
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        off = 1 if self.prepend_bos else 0
        return [i + off for i, (a, b) in enumerate(enc["offset_mapping"]) if a < end and b > start]

    def pad(self, seqs: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
        """Right-pad token lists into ``tokens [batch, pos]`` and ``lengths [batch]``."""
        if not seqs:
            raise ValueError("no sequences to pad")
        lengths = torch.tensor([len(s) for s in seqs])
        longest = int(lengths.max())
        if longest > self.cfg.n_ctx:
            raise ValueError(f"a prompt of {longest} tokens exceeds the model's context of {self.cfg.n_ctx}")
        if int(lengths.min()) == 0:
            raise ValueError("an empty prompt cannot be run")
        tokens = torch.full((len(seqs), longest), self.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            tokens[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        return tokens.to(self.device), lengths.to(self.device)

    # ---- running ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def hooks(
        self,
        hooks: Sequence[Hook] = (),
        *,
        fwd_hooks: Sequence[Hook] = (),
        bwd_hooks: Sequence[Hook] = (),
        **kwargs,
    ) -> Iterator[None]:
        """Attach ``(hook_name, fn(activation, hook))`` pairs for the block; always removed.
        TransformerLens' spelling works too: ``fwd_hooks=``, ``bwd_hooks=`` and the hooked
        model's other options (``reset_hooks_end``, ``clear_contexts``)."""
        with self.hooked.hooks(fwd_hooks=[*hooks, *fwd_hooks], bwd_hooks=list(bwd_hooks), **kwargs):
            yield

    # ---- TransformerLens' verbs, with drift's tokenisation ------------------------------------
    def to_tokens(
        self,
        input: str | Sequence[str],
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
        move_to_device: bool = True,
        truncate: bool | None = None,
    ) -> Tensor:
        """``[batch, pos]`` token ids as :meth:`encode` makes them, with TransformerLens'
        options: ``prepend_bos`` (default: the model's convention), ``padding_side`` for a list
        (``"right"``, the default, or ``"left"``; pads are the pad token), ``move_to_device``
        (else on the CPU) and ``truncate`` (``True``: cut to the context length; otherwise a
        longer prompt is an error, since cutting it would score a different prompt)."""
        texts = [input] if isinstance(input, str) else list(input)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError(f"to_tokens takes a string or a list of strings, got {type(input).__name__}")
        if padding_side not in (None, "right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        seqs = [self.encode(t, prepend_bos=prepend_bos) for t in texts]
        if truncate:
            seqs = [s[: self.cfg.n_ctx] for s in seqs]
        tokens, lengths = self.pad(seqs)
        if padding_side == "left":
            tokens = torch.stack([row.roll(int(tokens.shape[1] - n)) for row, n in zip(tokens, lengths)])
        return tokens if move_to_device else tokens.cpu()

    def to_str_tokens(
        self,
        input: str | Sequence[str] | Tensor,
        prepend_bos: bool | None = None,
        padding_side: str | None = None,
    ) -> list[str] | list[list[str]]:
        """Each token of ``input`` as a string; text is tokenised by :meth:`to_tokens`."""
        if isinstance(input, list) and all(isinstance(t, str) for t in input):
            return [self.to_str_tokens(t, prepend_bos, padding_side) for t in input]
        if isinstance(input, str):
            input = self.to_tokens(input, prepend_bos=prepend_bos)[0]
        return self.hooked.to_str_tokens(input)

    def generate(self, input: str | Sequence[str] | Tensor = "", *args, **kwargs):
        """The hooked model's ``generate`` (same arguments and results), with drift's BOS
        convention for text. The key-value cache reaches every attention layer (see
        ``drift.model._bridge.route_cache_to_attention``), so ``use_past_kv_cache=True`` and ``False``
        give the same greedy text."""
        with _bridge.quiet_cache_rename():
            return self._as_own(self.hooked.generate)(input, *args, **kwargs)

    def _inputs(self, x, kwargs: dict) -> tuple[Tensor, dict]:
        """Tokens for ``x`` (text through :meth:`to_tokens`, taking ``prepend_bos`` and
        ``padding_side`` out of ``kwargs``) and the keyword arguments for the hooked model; a
        left-padded batch gets the attention mask that keeps its pads out of every real token's
        view (and, on a bridge, its position ids)."""
        kwargs = dict(kwargs)
        bos, side = kwargs.pop("prepend_bos", None), kwargs.pop("padding_side", None)
        if not isinstance(x, (str, list)):
            return x, kwargs
        tokens = self.to_tokens(x, prepend_bos=bos, padding_side=side)
        if side == "left" and kwargs.get("attention_mask") is None:
            texts = [x] if isinstance(x, str) else x
            lengths = [len(self.encode(t, prepend_bos=bos)) for t in texts]
            if min(lengths) < tokens.shape[1]:
                cols = torch.arange(tokens.shape[1], device=tokens.device)
                width = torch.tensor(lengths, device=tokens.device)[:, None]
                kwargs["attention_mask"] = (cols >= tokens.shape[1] - width).long()
        return tokens, kwargs

    def __call__(self, input: Tensor | str | Sequence[str], *args, **kwargs) -> Tensor:
        """What calling the hooked model gives (logits ``[batch, pos, d_vocab]`` by default;
        ``return_type=``, ``stop_at_layer=`` … pass through), text tokenised by :meth:`to_tokens`."""
        tokens, kwargs = self._inputs(input, kwargs)
        return self.hooked(tokens, *args, **kwargs)

    def run_with_cache(self, input: Tensor | str | Sequence[str], *args, **kwargs):
        """``(logits, cache)`` of the hooked model's ``run_with_cache`` (``names_filter=``,
        ``return_type=`` … pass through), text tokenised by :meth:`to_tokens`."""
        tokens, kwargs = self._inputs(input, kwargs)
        return self.hooked.run_with_cache(tokens, *args, **kwargs)

    def run_with_hooks(
        self, input: Tensor | str | Sequence[str], fwd_hooks: Sequence[Hook] = (), *args, **kwargs
    ):
        """The hooked model's ``run_with_hooks``; hooks are removed afterwards."""
        tokens, kwargs = self._inputs(input, kwargs)
        return self.hooked.run_with_hooks(tokens, *args, fwd_hooks=list(fwd_hooks), **kwargs)

    def forward(
        self,
        tokens: Tensor | str | Sequence[str],
        hooks: Sequence[Hook] | str = (),
        *,
        start_at_layer: int | None = None,
        stop_at_layer: int | None = None,
        prefix: Prefix | None = None,
        **kwargs,
    ) -> Tensor:
        """Logits ``[batch, pos, d_vocab]`` (or the residual at ``stop_at_layer``), with
        ``hooks`` attached for this pass; other keywords (``return_type=`` …) go to the hooked
        model, text is tokenised by :meth:`to_tokens`. A string in ``hooks``' place is
        TransformerLens' second argument, ``return_type`` (``model.forward(text, "loss")``).

        With ``start_at_layer=l``, ``tokens`` is the residual stream ``[batch, pos, d_model]``
        entering block ``l``. With ``prefix`` (from :meth:`prefix`), ``tokens`` holds only the
        columns after the prefix, which every layer's attention reads from its cache.
        """
        if isinstance(hooks, str):
            kwargs["return_type"], hooks = hooks, ()
        tokens, kwargs = self._inputs(tokens, kwargs)
        if start_at_layer is not None:
            kwargs["start_at_layer"] = start_at_layer
        if stop_at_layer is not None:
            kwargs["stop_at_layer"] = stop_at_layer
        if prefix is not None:
            kwargs |= prefix.forward_kwargs()
        cached = prefix is not None or kwargs.get("past_key_values") is not None
        quiet = _bridge.quiet_cache_rename() if cached else contextlib.nullcontext()
        with self.hooks(hooks), self._skipping_blocks_below(start_at_layer), quiet:
            return self.hooked(tokens, **kwargs)

    @property
    def supports_prefix(self) -> bool:
        """Whether :meth:`prefix` works here: a bridge over a Hugging Face model (the legacy
        ``HookedTransformer`` keeps its own cache format, which drift does not drive)."""
        return self.kind == "bridge" and self._decoder_list() is not None

    @torch.no_grad()
    def prefix(
        self, tokens: Tensor, mask: Tensor, positions: Tensor, n: int, layer: int
    ) -> tuple[Tensor, Prefix]:
        """One pass over a left-aligned batch ``tokens [batch, pos]`` (``mask``: 1 at real
        tokens; ``positions``: each token's position id). Returns the residual entering block
        ``layer`` at columns ``n..`` ``[batch, pos - n, d_model]`` and the :class:`Prefix` that
        holds every layer's keys and values of columns ``< n``, so that
        ``forward(resid, start_at_layer=layer, prefix=...)`` computes what a full forward
        computes at those columns while running only them."""
        if not self.supports_prefix:
            raise NotImplementedError(f"a key-value prefix needs a TransformerBridge model, not {self.kind}")
        cache = _bridge.new_cache()
        # The pass stops after the last block: every layer's keys and values are cached by then.
        entering = self.hook_name("resid_pre", layer)
        last = self.hook_name("resid_post", self.cfg.n_layers - 1)
        got = self._run_until(
            tokens,
            [entering, last],
            keep=Tensor.detach,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
        return got[entering][:, n:], _bridge.kept_prefix(cache, n, mask, positions)

    def _skipping_blocks_below(self, start: int | None):
        """A context in which ``start_at_layer=start`` runs no block below ``start`` (the
        legacy ``HookedTransformer`` already skips them; a bridge is helped by
        :func:`drift.model._bridge.skipping_blocks_below`)."""
        if self.kind != "bridge" or not start:
            return contextlib.nullcontext()
        return _bridge.skipping_blocks_below(self.hooked, start, self._decoder_list())

    def _decoder_list(self):
        """``(parent, attribute, ModuleList)`` holding the bridge's blocks, or None (looked up once)."""
        if "_decoder" not in self.__dict__:
            self._decoder = _bridge.decoder_list(self.hooked)
        return self._decoder

    # ---- reading activations ----------------------------------------------------------------
    def _run_until(
        self,
        tokens: Tensor | str | Sequence[str],
        names: Sequence[str],
        hooks: Sequence[Hook] = (),
        *,
        keep: Callable[[Tensor], Tensor],
        **forward_kw,
    ) -> dict[str, Tensor]:
        """``keep(activation)`` at each hook name in ``names`` (after ``hooks`` at the same
        point), the forward pass stopped as soon as the last of them has fired."""
        names = list(dict.fromkeys(names))
        got: dict[str, Tensor] = {}

        def grab(name: str):
            def fn(act: Tensor, hook) -> None:  # hook.name may be an alias; the name is bound here
                got[name] = keep(act)
                if len(got) == len(names):
                    raise _Stop

            return fn

        try:
            self.forward(tokens, [*hooks, *[(n, grab(n)) for n in names]], **forward_kw)
        except _Stop:
            return got
        missing = [n for n in names if n not in got]
        raise RuntimeError(f"hooks {missing} did not fire")

    def capture(
        self,
        tokens: Tensor,
        site: str | Site,
        layer: int | None = None,
        hooks: Sequence[Hook] = (),
        *,
        start_at_layer: int | None = None,
        prefix: Prefix | None = None,
    ) -> Tensor:
        """The activation at ``site``/``layer`` (or a :class:`~drift.model.sites.Site`), stopping the
        forward pass right there. Gradients flow through it, and it is the model's own tensor:
        :meth:`record` gives detached copies."""
        name = self.hook_name(site, layer)
        got = self._run_until(
            tokens, [name], hooks, keep=lambda act: act, start_at_layer=start_at_layer, prefix=prefix
        )
        return got[name]

    @torch.no_grad()
    def record(
        self,
        input: Tensor | str | Sequence[str],
        sites: Iterable[Site | tuple | str],
        hooks: Sequence[Hook] = (),
        *,
        start_at_layer: int | None = None,
        prefix: Prefix | None = None,
        **kwargs,
    ) -> ActivationCache:
        """The activations at ``sites`` for ``input``, as a TransformerLens ``ActivationCache``.

        ``input`` is tokens ``[batch, pos]`` or text (tokenised by :meth:`to_tokens`); ``sites``
        are each a :class:`~drift.model.sites.Site`, a ``(kind, layer)`` pair or a ``"kind@layer"`` string;
        ``hooks`` run too (an edit's patches, say), before the recording at the same point.
        The forward pass stops once the last site is recorded. Each activation is a detached
        copy ``[batch, ...]`` under its hook name, and the cache also reads drift's names of
        the sites (:class:`drift.model.recording.SiteCache`). Other keywords go to :meth:`forward`.

        Example:
            >>> cache = model.record("The Eiffel Tower is in", ["resid_post@1", ("pattern", 0)])
            >>> cache["resid_post", 1].shape, cache["pattern", 0].shape  # [b, pos, d_model], [b, head, q, k]
            (torch.Size([1, 8, 32]), torch.Size([1, 4, 8, 8]))
        """
        from drift.model.recording import SiteCache

        names = {site: self.hook_name(site) for site in map(Site.of, sites)}
        if not names:
            raise ValueError("record needs at least one site")
        got = self._run_until(
            input,
            list(names.values()),
            hooks,
            keep=lambda act: act.detach().clone(),
            start_at_layer=start_at_layer,
            prefix=prefix,
            **kwargs,
        )
        return SiteCache(got, self.hooked, names)

    def residual(
        self,
        tokens: Tensor,
        hooks: Sequence[Hook] = (),
        *,
        layer: int | None = None,
        start_at_layer: int | None = None,
        prefix: Prefix | None = None,
    ) -> Tensor:
        """The residual stream ``[batch, pos, d_model]`` after block ``layer`` (default: the last),
        computing nothing after it."""
        layer = self.cfg.n_layers - 1 if layer is None else layer
        return self.capture(tokens, "resid_post", layer, hooks, start_at_layer=start_at_layer, prefix=prefix)

    def logits_from(self, resid: Tensor) -> Tensor:
        """Logits ``[..., d_vocab]`` from final-layer residuals ``[..., d_model]``: the final norm,
        then the unembedding (``model.unembed`` is TransformerLens' unembedding module alone)."""
        norm, unembed = (getattr(self.hooked, n, None) for n in HEAD_MODULES)
        x = resid if norm is None else norm(resid)
        return unembed(x)

    def logits_at(
        self,
        tokens: Tensor,
        rows: Tensor,
        cols: Tensor,
        hooks: Sequence[Hook] = (),
        *,
        start_at_layer: int | None = None,
        prefix: Prefix | None = None,
    ) -> Tensor:
        """Logits ``[n, d_vocab]`` at ``(rows[i], cols[i])`` only: the unembedding, the largest
        matrix of a small model, is applied where a token is scored and nowhere else."""
        resid = self.residual(tokens, hooks, start_at_layer=start_at_layer, prefix=prefix)
        return self.logits_from(resid[rows.to(resid.device), cols.to(resid.device)])

    @torch.no_grad()
    def sample(self, tokens: Tensor, max_new_tokens: int, *, top_k: int = 50, seed: int = 0) -> Tensor:
        """Seeded top-k sampling with the key-value cache: ``tokens [batch, pos]`` (equal lengths,
        no padding) -> ``[batch, pos + max_new_tokens]``. Runs without drift's hooks. Tokens are
        drawn on the CPU (:func:`drift.model._bridge.draws_on_cpu`), so a seed gives the same text on a
        GPU as on the CPU, up to the devices' rounding of the logits."""
        with torch.random.fork_rng(devices=[]), _bridge.quiet_cache_rename(), _bridge.draws_on_cpu():
            torch.manual_seed(seed)
            return self.hooked.generate(
                tokens.to(self.device),
                max_new_tokens=max_new_tokens,
                do_sample=True,
                top_k=top_k,
                stop_at_eos=False,
                use_past_kv_cache=True,
                verbose=False,
                return_type="tokens",
            )

    def target_prob(self, prompt: str, target: str, scoring: str = "mean") -> float:
        """P(target | prompt) as evaluation scores it: exp of the mean log-probability per target
        token (``scoring="product"``: the whole target's probability); see
        :func:`drift.model.scoring.target_prob`."""
        return target_prob(self, prompt, target, scoring)
