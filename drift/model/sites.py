"""Places in a model: a :class:`Site` is an activation a hook reads or writes, a :class:`Weight`
is a matrix an edit changes. The two are different types with different names, so the MLP's
output *activation* (``Site("mlp_out", 4)``, ``[batch, pos, d_model]``) is never confused with
the MLP's output *matrix* (``Weight("W_out", 4)``, ``[d_mlp, d_model]``).

Both print as ``"name@layer"`` and are read back by ``parse``; these strings are what caches
hold. A weight has one name, TransformerLens' (``W_out``, ``W_O``); results files, written before
the weights had their own names, say ``"mlp_out@4"`` and ``"attn_out@4"`` for them (e.g. an edit's
``"relative_change"``) and still do (:attr:`Weight.result_name`), and :meth:`Weight.parse` reads
those back as ``W_out`` and ``W_O``.

Both are tuples, so ``("mlp_out", 4)`` still works wherever a site is expected and as a key of a
dict keyed by sites.

This module imports nothing heavy: option parsing can use it before torch is loaded.

Example:
    >>> Site("mlp_key", 4).hook_name                 # its TransformerLens hook name
    'blocks.4.mlp.hook_post'
    >>> Site.parse("resid_pre@0"), str(Site("embed"))
    (Site(kind='resid_pre', layer=0), 'embed')
    >>> Site("mlp_out", 4) == ("mlp_out", 4)         # a plain (kind, layer) pair is the same key
    True
    >>> Weight.parse("mlp_out@4")                    # a name results files already hold
    Weight(name='W_out', layer=4)
    >>> w = Weight("W_O", 8)
    >>> str(w), w.shape, w.path                      # how it prints, its shape, where it lives
    ('W_O@8', 'n_heads d_head d_model', 'attn.W_O')
    >>> w.result_name                                # how results files name it
    'attn_out@8'
"""

from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from torch import Tensor

# Site kind -> TransformerLens hook-name template ("{layer}" where the site has one per block).
HOOK_NAMES: dict[str, str] = {
    "embed": "hook_embed",
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "mlp_key": "blocks.{layer}.mlp.hook_post",  # input of W_out: the key ROME/MEMIT edit
    "pattern": "blocks.{layer}.attn.hook_pattern",  # [batch, head, query, key], post-softmax
    "scores": "blocks.{layer}.attn.hook_attn_scores",  # [batch, head, query, key], pre-softmax
}

# Weight name -> (attribute path under blocks[layer], shape names), TransformerLens' names.
WEIGHTS: dict[str, tuple[str, str]] = {
    "W_out": ("mlp.W_out", "d_mlp d_model"),  # the MLP's output matrix
    "W_O": ("attn.W_O", "n_heads d_head d_model"),  # the attention's output matrix
}

# The names weights had when they shared the names of the activations they produce: read as the
# weights' names, and what results files write (RESULT_NAMES), so committed results read the same.
WEIGHT_ALIASES: dict[str, str] = {"mlp_out": "W_out", "attn_out": "W_O"}
RESULT_NAMES: dict[str, str] = {name: old for old, name in WEIGHT_ALIASES.items()}

# A forward hook as TransformerLens takes it: (hook name, fn(activation, hook) -> new or None).
Hook = tuple[str, Callable[["Tensor", Any], "Tensor | None"]]


def _split(text: str) -> tuple[str, int | None]:
    """``"name@4"`` -> ``("name", 4)``; ``"name"`` -> ``("name", None)``."""
    name, at, layer = text.partition("@")
    if not at:
        return text, None
    try:
        return name, int(layer)
    except ValueError:
        raise ValueError(f"{text!r} is not 'name@layer' with a whole-number layer") from None


class Site(namedtuple("Site", "kind layer", defaults=(None,))):
    """An activation in the forward pass: ``kind`` (a key of :data:`HOOK_NAMES`) at ``layer``
    (``None`` for ``"embed"``, the one site outside the blocks).

    Example:
        >>> Site("pattern", 2)
        Site(kind='pattern', layer=2)
        >>> Site.of("scores@1"), Site.of(("mlp_out", 3)).hook_name
        (Site(kind='scores', layer=1), 'blocks.3.hook_mlp_out')
        >>> Site("W_out", 1)                         # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: unknown site 'W_out'; sites: ... (a weight is a drift.model.sites.Weight)
    """

    __slots__ = ()

    def __new__(cls, kind: str, layer: int | None = None) -> Site:
        if kind not in HOOK_NAMES:
            hint = " (a weight is a drift.model.sites.Weight)" if kind in WEIGHTS else ""
            raise ValueError(f"unknown site {kind!r}; sites: {', '.join(sorted(HOOK_NAMES))}{hint}")
        per_block = "{layer}" in HOOK_NAMES[kind]
        if per_block != (layer is not None):
            need = "a layer" if per_block else "no layer"
            raise ValueError(f"site {kind!r} takes {need}, got {layer!r}")
        return super().__new__(cls, kind, None if layer is None else int(layer))

    @property
    def hook_name(self) -> str:
        """The TransformerLens hook name (``Model.hook_name`` gives the one of a model's kind)."""
        return HOOK_NAMES[self.kind].format(layer=self.layer)

    def __str__(self) -> str:
        return self.kind if self.layer is None else f"{self.kind}@{self.layer}"

    @classmethod
    def parse(cls, text: str) -> Site:
        """The site ``str(site)`` printed: ``"mlp_key@4"`` or ``"embed"``."""
        return cls(*_split(text))

    @classmethod
    def of(cls, place: Site | tuple | str) -> Site:
        """A site from a :class:`Site`, a ``(kind, layer)`` pair or a ``"kind@layer"`` string."""
        if isinstance(place, Site):
            return place
        if isinstance(place, str):
            return cls.parse(place)
        return cls(*place)


class Weight(namedtuple("Weight", "name layer")):
    """A matrix an edit writes: ``name`` (a key of :data:`WEIGHTS`; the older names
    ``"mlp_out"`` and ``"attn_out"`` are read as ``"W_out"`` and ``"W_O"``) at ``layer``.

    Example:
        >>> Weight("mlp_out", 4)
        Weight(name='W_out', layer=4)
        >>> Weight.of("W_O@2").path, Weight("W_out", 0).shape
        ('attn.W_O', 'd_mlp d_model')
    """

    __slots__ = ()

    def __new__(cls, name: str, layer: int) -> Weight:
        name = WEIGHT_ALIASES.get(name, name)
        if name not in WEIGHTS:
            raise ValueError(f"unknown weight {name!r}; weights: {', '.join(sorted(WEIGHTS))}")
        if layer is None:
            raise ValueError(f"weight {name!r} needs a layer")
        return super().__new__(cls, name, int(layer))

    @property
    def path(self) -> str:
        """Its attribute path under ``blocks[layer]`` of a TransformerLens model."""
        return WEIGHTS[self.name][0]

    @property
    def shape(self) -> str:
        """The names of its dimensions, e.g. ``"d_mlp d_model"``."""
        return WEIGHTS[self.name][1]

    @property
    def result_name(self) -> str:
        """How results files name it, e.g. an edit's ``"relative_change": {"mlp_out@4": ...}``:
        ``"mlp_out@4"`` for ``W_out@4``, ``"attn_out@4"`` for ``W_O@4`` (the names weights had
        before they had their own, which committed results hold)."""
        return f"{RESULT_NAMES[self.name]}@{self.layer}"

    def __str__(self) -> str:
        return f"{self.name}@{self.layer}"

    @classmethod
    def parse(cls, text: str) -> Weight:
        """The weight ``str(weight)`` printed, or an older ``"mlp_out@4"``."""
        name, layer = _split(text)
        if layer is None:
            raise ValueError(f"{text!r} is not 'name@layer'")
        return cls(name, layer)

    @classmethod
    def of(cls, place: Weight | tuple | str) -> Weight:
        """A weight from a :class:`Weight`, a ``(name, layer)`` pair or a ``"name@layer"`` string."""
        if isinstance(place, Weight):
            return place
        if isinstance(place, str):
            return cls.parse(place)
        return cls(*place)
