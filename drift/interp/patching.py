"""Activation patching: one generic scan over patch states, fast and exact.

A **state** is a tuple of :class:`Write` records, each copying a recorded *source* activation
into the *receiving* forward pass at one :class:`~drift.model.sites.Site` (a hook site and layer) and
index (after the batch dimension):

- ``Write("mlp_out", 7, (12,))`` — the MLP output of layer 7 at token 12;
- ``Write("pattern", 9)`` — every head's whole attention pattern at layer 9;
- ``Write("scores", 9, (slice(None), 20, 4))`` — every head's pre-softmax score from token 20
  to token 4.

:func:`patch_scan` returns, for every state, the probabilities of some tokens at one read position.
The analyses (``drift.interp.tracing``) are thin specialisations that only build states: contaminating
substitution (vanilla receiver, edited source), attention-weight and score patching (edited
receiver, vanilla source). Source and receiver are the same hooked model with and without an
edit applied, so sources are recorded in one forward with the edit in place.

Speed (the naive version, :func:`patch_scan_naive`, runs one full forward per state):

- a write at layer l changes nothing below l, so each state's forward starts at its first
  written layer from the receiver's own residual stream, recorded once;
- states are sorted by that layer and run many per forward, one row each;
- a state that writes only what the receiver already has (below an edited layer, say) is not
  run at all: its result is the receiver's own;
- only the read position is unembedded.

Example:
    >>> tokens = torch.tensor([model.encode("The Eiffel Tower is in")])
    >>> other = torch.tensor([model.encode("The Eiffel Tower is on")])                      # as long
    >>> src = record(model, other, [Site("mlp_out", l) for l in range(2)])
    >>> states = [(Write("mlp_out", l, (t,)),) for l in range(2) for t in range(tokens.shape[1])]
    >>> read = torch.tensor(model.encode_target("Paris")[:1])
    >>> probs = patch_scan(model, tokens, states, src, read)
    >>> probs.shape                                                    # [layers × tokens, read tokens]
    torch.Size([16, 1])
    >>> torch.allclose(probs, patch_scan_naive(model, tokens, states, src, read), atol=1e-6)
    True
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from drift.model.adapter import Model
from drift.model.sites import Hook, Site
from drift.util import progress


@dataclass(frozen=True)
class Write:
    """Copy the source activation of ``site`` at ``layer`` into the receiver at ``index``."""

    site: str
    layer: int
    index: tuple = field(default=())

    @property
    def key(self) -> Site:
        """Where it writes (``site`` names the hook site, the kind of a :class:`Site`)."""
        return Site(self.site, self.layer)


State = tuple[Write, ...]


@torch.no_grad()
def record(
    model: Model, tokens: Tensor, keys: Iterable[Site | tuple], hooks: Sequence[Hook] = ()
) -> dict[Site, Tensor]:
    """Activations at ``keys`` (sites) for the single sequence ``tokens [1, pos]``, batch dim
    removed: :meth:`Model.record <drift.model.adapter.Model.record>`, one forward pass that stops once
    the last of them is recorded."""
    if tokens.shape[0] != 1:
        raise ValueError(f"record takes one sequence, got a batch of {tokens.shape[0]}")
    sites = [Site.of(k) for k in keys]
    cache = model.record(tokens, sites, hooks)
    return {site: cache[site][0] for site in sites}


def _writer(writes: list[tuple[int, tuple]], source: Tensor):
    """A hook copying ``source[index]`` into ``act[row][index]`` for each ``(row, index)``."""

    def fn(act: Tensor, hook) -> Tensor:
        for row, index in writes:
            act[(row, *index)] = source[index].to(act.dtype)
        return act

    return fn


def _hooks_for(model: Model, states: Sequence[State], source: Mapping[Site, Tensor]) -> list[Hook]:
    by_site: dict[Site, list[tuple[int, tuple]]] = defaultdict(list)
    for row, state in enumerate(states):
        for w in state:
            by_site[w.key].append((row, w.index))
    return [(model.hook_name(site), _writer(ws, source[site])) for site, ws in by_site.items()]


def _check_source(states: Sequence[State], source: Mapping[Site, Tensor]) -> None:
    missing = sorted({w.key for s in states for w in s if w.key not in source})
    if missing:
        names = ", ".join(map(str, missing))
        raise KeyError(f"patch states write {names} but the source has no such activations")


def _read(
    model: Model, resid: Tensor, hooks: list[Hook], start: int, read_pos: int, read_tokens: Tensor
) -> Tensor:
    rows = torch.arange(resid.shape[0], device=resid.device)
    cols = torch.full_like(rows, read_pos)
    logits = model.logits_at(resid, rows, cols, hooks, start_at_layer=start)  # [B, d_vocab]
    return logits.float().softmax(-1)[:, read_tokens.to(logits.device)]


@torch.no_grad()
def patch_scan(
    model: Model,
    tokens: Tensor,
    states: Sequence[State],
    source: Mapping[Site, Tensor],
    read_tokens: Tensor,
    *,
    read_pos: int = -1,
    hooks: Sequence[Hook] = (),
    batch_size: int = 32,
    verbose: bool | None = None,
) -> Tensor:
    """Probabilities ``[n_states, n_read]`` of ``read_tokens`` at ``read_pos`` of ``tokens [1, pos]``
    for the receiving model (``hooks`` plus the model's current weights) with each state written.

    An empty state gives the receiver's own output. ``verbose``: a bar over the batches of
    states (:mod:`drift.util.progress`)."""
    with progress.verbose(verbose):
        return _patch_scan(model, tokens, states, source, read_tokens, read_pos, hooks, batch_size)


def _patch_scan(model, tokens, states, source, read_tokens, read_pos, hooks, batch_size) -> Tensor:
    _check_source(states, source)
    n_layers = model.cfg.n_layers
    read_pos = read_pos % tokens.shape[1]
    written = {w.key for s in states for w in s}
    # The receiver's residual stream entering every layer and its own values at the written
    # sites, recorded once.
    clean = record(model, tokens, [Site("resid_pre", l) for l in range(n_layers)] + sorted(written), hooks)
    noop = [all(torch.equal(source[w.key][w.index], clean[w.key][w.index]) for w in s) for s in states]
    start_of = [min((w.layer for w in s), default=n_layers - 1) for s in states]
    out = torch.empty(len(states), len(read_tokens))
    if any(noop):  # writing what the receiver already has changes nothing: its own output
        resid = clean[Site("resid_pre", n_layers - 1)].unsqueeze(0)
        out[torch.tensor(noop)] = _read(model, resid, list(hooks), n_layers - 1, read_pos, read_tokens).cpu()
    order = sorted((i for i in range(len(states)) if not noop[i]), key=lambda i: start_of[i])
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for chunk in progress.bar(chunks, desc="patching", unit="batch"):
        start = start_of[chunk[0]]
        resid = clean[Site("resid_pre", start)].unsqueeze(0).repeat(len(chunk), 1, 1)  # [B, pos, d_model]
        patch = _hooks_for(model, [states[i] for i in chunk], source)
        out[chunk] = _read(model, resid, [*hooks, *patch], start, read_pos, read_tokens).cpu()
    return out


@torch.no_grad()
def patch_scan_naive(
    model: Model,
    tokens: Tensor,
    states: Sequence[State],
    source: Mapping[Site, Tensor],
    read_tokens: Tensor,
    *,
    read_pos: int = -1,
    hooks: Sequence[Hook] = (),
) -> Tensor:
    """The reference for :func:`patch_scan`: one full forward from the tokens per state."""
    _check_source(states, source)
    out = torch.empty(len(states), len(read_tokens))
    for i, state in enumerate(states):
        logits = model.forward(tokens, [*hooks, *_hooks_for(model, [state], source)])
        out[i] = logits[0, read_pos].float().softmax(-1)[read_tokens.to(logits.device)].cpu()
    return out
