"""What :meth:`drift.model.adapter.Model.record` returns: TransformerLens' ``ActivationCache``, which also
takes drift's sites as keys.

Its entries are keyed by hook name, as ``run_with_cache`` keys them, so every TransformerLens
helper (``stack_activation``, ``accumulated_resid``, ``remove_batch_dim`` …) works on it. A
:class:`~drift.model.sites.Site`, a ``(kind, layer)`` pair or a ``"kind@layer"`` string it recorded
reads that site; anything else is read as TransformerLens reads it (``cache["pattern", 1]``).
Imported when a recording is first made, since TransformerLens is slow to import.

Example:
    >>> from drift.model.sites import Site
    >>> cache = model.record("The Eiffel Tower is in", [Site("mlp_key", 1), ("pattern", 0)])
    >>> cache["mlp_key", 1].shape                        # [batch, pos, d_mlp]
    torch.Size([1, 8, 64])
    >>> cache["mlp_key@1"] is cache["blocks.1.mlp.hook_post"] is cache[Site("mlp_key", 1)]
    True
    >>> sorted(cache.keys())                             # hook names, as run_with_cache has them
    ['blocks.0.attn.hook_pattern', 'blocks.1.mlp.hook_post']
"""

from __future__ import annotations

from transformer_lens import ActivationCache

from drift.model.sites import Site


class SiteCache(ActivationCache):
    """An ``ActivationCache`` whose sites can also be named as drift names them.

    Args:
        cache_dict: hook name -> activation ``[batch, ...]``.
        model: the hooked TransformerLens model the activations come from.
        names: each recorded site's hook name in that model.
    """

    def __init__(self, cache_dict: dict, model, names: dict[Site, str], has_batch_dim: bool = True):
        super().__init__(cache_dict, model, has_batch_dim=has_batch_dim)
        self.names = dict(names)

    def __getitem__(self, key):
        if isinstance(key, str) and key in self.cache_dict:
            return self.cache_dict[key]
        if isinstance(key, (str, tuple)):
            try:
                site = Site.of(key)
            except (TypeError, ValueError):
                site = None
            if site in self.names:
                return self.cache_dict[self.names[site]]
        return super().__getitem__(key)
