"""Finding target vectors: gradient descent on vectors added at sites of the subject's last token.

ROME adds δ to the MLP output of its layer, MEMIT to the residual stream after the last layer of
its range, PMET to both the attention and the MLP outputs of the last critical layer; all share
this routine. Each step is **one** batched forward/backward over every context-prefixed
rewriting sequence and the "{subject} is a" prompt, that **starts at the first edited layer**
from a residual stream cached once (nothing below it changes), and unembeds **only** the positions
where a target token or the KL distribution is read.

Example:
    >>> from drift.editors.objectives import default_terms
    >>> result = optimise_targets(model, case, [("mlp_out", 1)], default_terms(0.0625, 0.5), steps=3)
    >>> result.deltas[("mlp_out", 1)].shape                                 # [d_model]
    torch.Size([32])
    >>> len(result.losses), list(result.losses[0])                          # one entry per forward pass
    (3, ['nll', 'kl', 'weight_decay', 'p_target'])
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
from torch import Tensor

from drift.adapter import Model
from drift.data import EditCase
from drift.editors.objectives import EditBatch, LossTerm, Step
from drift.reprs import fields_repr

Site = tuple[str, int]  # (site name, layer), e.g. ("mlp_out", 4)

log = logging.getLogger(__name__)


class EditDiverged(RuntimeError):
    """The optimisation produced NaN or inf; nothing was applied to the model."""


@dataclass
class TargetResult:
    deltas: dict[Site, Tensor]  # the optimised vectors [d_model]
    v0: dict[Site, Tensor]  # each site's original output at the subject's last token, bare prompt
    keys: dict[int, Tensor]  # layer -> [n_prompts, d_mlp] MLP keys at the subject's last token
    losses: list[dict[str, float]] = field(default_factory=list)
    batch: EditBatch | None = None
    prompts: list[str] = field(default_factory=list)

    __repr__ = fields_repr


def build_batch(
    model: Model, case: EditCase, prefixes: Sequence[str], start_layer: int
) -> tuple[EditBatch, list[list[int]], list[str]]:
    """Tokenise the rewriting sequences (prefix + prompt + o_edit[:-1]) and the KL prompt."""
    target = model.encode_target(case.o_edit)
    prompts = [p + case.prompt for p in prefixes]
    seqs, lookup, query = [], [], []
    for prefix, prompt in zip(prefixes, prompts):
        ids = model.encode(prompt)
        at = case.subject_at(prompt, len(prefix))  # the template's slot, as the reference reads it
        lookup.append(model.subject_positions(prompt, case.subject, start=at)[-1])
        query.append(len(ids) - 1)
        seqs.append(ids + target[:-1])
    kl_prompt = f"{case.subject} is a"
    seqs.append(model.encode(kl_prompt))
    lookup.append(model.subject_positions(kl_prompt, case.subject, start=0)[-1])
    query.append(len(seqs[-1]) - 1)
    tokens, lengths = model.pad(seqs)
    batch = EditBatch(
        tokens=tokens,
        lookup=torch.tensor(lookup, device=tokens.device),
        query=torch.tensor(query, device=tokens.device),
        n_rewrite=len(prompts),
        start_layer=start_layer,
        lengths=lengths,
    )
    return batch, [target] * len(prompts), prompts


def read_sites(batch: EditBatch, targets: list[list[int]]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Where each step reads logits: ``(rows, cols)`` of every target token of each rewriting
    row (``tokens [n_reads_target]``, ``owner`` = its row), then of each KL row at the subject's
    last token of "{subject} is a", as the reference code reads its KL distribution."""
    n = batch.n_rewrite
    rows, cols, toks = [], [], []
    for b in range(n):
        for j, tok in enumerate(targets[b]):
            rows.append(b)
            cols.append(int(batch.query[b]) + j)
            toks.append(tok)
    kl_rows = list(range(n, batch.tokens.shape[0]))
    device = batch.tokens.device
    return (
        torch.tensor(rows + kl_rows, device=device),
        torch.tensor(cols + [int(batch.lookup[b]) for b in kl_rows], device=device),
        torch.tensor(toks, device=device),
        torch.tensor(rows, device=device),
    )


def left_aligned(batch: EditBatch, pad_id: int) -> tuple[Tensor, Tensor, Tensor, int]:
    """The batch re-laid so every row's subject's last token sits in one column P: ``tokens``,
    ``mask`` (1 at real tokens) and ``positions`` (each token's position id), all
    ``[batch, P + rest]``, and P. Columns < P come before every subject and never change."""
    lookup, lengths = batch.lookup.tolist(), batch.lengths.tolist()
    P = max(lookup)
    width = P + max(n - l for n, l in zip(lengths, lookup))
    device = batch.tokens.device
    tokens = torch.full((len(lookup), width), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(tokens)
    positions = torch.zeros_like(tokens)
    for b, (l, n) in enumerate(zip(lookup, lengths)):
        tokens[b, P - l : P - l + n] = batch.tokens[b, :n]
        mask[b, P - l : P - l + n] = 1
        positions[b, P - l : P - l + n] = torch.arange(n, device=device)
    return tokens, mask, positions, P


def optimise_targets(
    model: Model,
    case: EditCase,
    sites: Sequence[Site],
    terms: Sequence[LossTerm],
    *,
    prefixes: Sequence[str] = ("",),
    steps: int = 20,
    lr: float = 0.5,
    clamp_norm: float = 4.0,
    key_layers: Sequence[int] = (),
    block_attention_grad: bool = False,
    early_stop: float = 5e-2,
    stop_on: str = "total",
    pmet_schedule: bool = False,
    prefix_cache: bool = True,
) -> TargetResult:
    """Optimise one vector per site (see module docstring). The model is never changed.

    Args:
        sites: where vectors are added, e.g. ``[("mlp_out", 4)]`` or
            ``[("attn_out", 8), ("mlp_out", 8)]``.
        terms: the objective (``drift.editors.objectives``).
        prefixes: context prefixes, the empty one first.
        clamp_norm: each δ is kept within ``clamp_norm · ‖v₀‖``.
        key_layers: layers whose MLP keys at the subject's last token are recorded (must be
            ≥ the first site's layer).
        block_attention_grad: ROME-AWD, no gradient through attention weights of layers at or
            after the first site.
        early_stop, stop_on: stop once the ``"total"`` loss (every term, as the reference code
            does) or the ``"nll"`` term alone is below ``early_stop`` (0: never). As in the
            reference, the last of ``steps`` forward passes makes no update: ``steps`` passes,
            at most ``steps − 1`` updates.
        pmet_schedule: PMET's reference schedule: after a step where every target token is the
            argmax, the NLL is weighted 0.1 and the optimisation stops once the KL term is ≤ 0.01.
        prefix_cache: run each step only over the columns from the subject's last token on, the
            ones before it held as keys and values from one pass (where the model allows it,
            :attr:`drift.adapter.Model.supports_prefix`); ``False`` runs every column each step.
            Both compute the same δ and losses up to float rounding.
    """
    if stop_on not in ("total", "nll"):
        raise ValueError(f"stop_on must be 'total' or 'nll', got {stop_on!r}")
    start = min(layer for _, layer in sites)
    if any(l < start for l in key_layers):
        raise ValueError(f"key layers {list(key_layers)} must be at or after the first edited layer {start}")
    batch, targets, prompts = build_batch(model, case, prefixes, start)
    n, rows = batch.n_rewrite, torch.arange(batch.tokens.shape[0], device=batch.tokens.device)
    rows_t, cols_t, tok_t, owner = read_sites(batch, targets)
    prefix, run = None, batch  # ``run``: the batch as each step sees it
    if prefix_cache and model.supports_prefix:
        tokens, mask, positions, P = left_aligned(batch, model.pad_id)
        resid, prefix = model.prefix(tokens, mask, positions, P, start)  # [batch, rest, d_model]
        shift = P - batch.lookup  # row b's column = its position + shift[b]
        run = replace(batch, lookup=batch.lookup + shift, query=batch.query + shift, offset=P)
        cols_t = cols_t + shift[rows_t] - P
    else:
        with torch.no_grad():
            resid = model.capture(batch.tokens, "resid_pre", start)  # [batch, pos, d_model], cached once
    at = run.lookup - run.offset  # each row's subject's last token, as an activation position
    n_tok = torch.bincount(owner, minlength=n).float()
    d_model = model.cfg.d_model
    deltas = {s: torch.zeros(d_model, device=resid.device, requires_grad=True) for s in sites}
    v0: dict[Site, Tensor] = {}
    keys: dict[int, Tensor] = {}
    opt = torch.optim.Adam(list(deltas.values()), lr=lr)

    def add_delta(site: Site):
        def fn(act: Tensor, hook) -> Tensor:
            if site not in v0:
                v0[site] = act[0, at[0]].detach().clone()  # bare prompt, subject's last token
            out = act.clone()
            out[rows, at] = out[rows, at] + deltas[site]
            return out

        return fn

    def record_keys(act: Tensor, hook) -> None:
        layer = int(hook.name.split(".")[1])
        if layer not in keys:
            keys[layer] = act[rows[:n], at[:n]].detach().clone()

    def detach(act: Tensor, hook) -> Tensor:
        return act.detach()

    base_hooks = [(model.hook_name(name, layer), add_delta((name, layer))) for name, layer in sites]
    base_hooks += [(model.hook_name("mlp_key", l), record_keys) for l in key_layers]
    if block_attention_grad:
        base_hooks += [(model.hook_name("pattern", l), detach) for l in range(start, model.cfg.n_layers)]
    vanilla_kl = None
    losses: list[dict[str, float]] = []
    nll_scale = 1.0
    for it in range(steps):
        extras: dict = {"model": model, "batch": run}  # what terms' hooks may need; they add to it
        hooks = list(base_hooks)
        for term in terms:
            hooks += list(term.hooks(run, extras))
        logits = model.logits_at(resid, rows_t, cols_t, hooks, start_at_layer=start, prefix=prefix)
        logp = logits.float().log_softmax(-1)
        tok_lp = logp[: len(tok_t)].gather(-1, tok_t[:, None]).squeeze(-1)
        target_logp = torch.zeros(n, device=logp.device).index_add(0, owner, tok_lp) / n_tok
        kl_logp = logp[len(tok_t) :]
        if vanilla_kl is None:  # step 0 runs with δ = 0: the unedited model
            vanilla_kl = kl_logp.detach()
        step = Step(
            step=it,
            target_logp=target_logp,
            kl_logp=kl_logp,
            vanilla_kl_logp=vanilla_kl,
            deltas={f"{k[0]}@{k[1]}": d for k, d in deltas.items()},
            v0_norms={f"{k[0]}@{k[1]}": v0[k].norm() for k in deltas},
            extras=extras,
            nll_scale=nll_scale,
        )
        parts = {term.name: term(step) for term in terms}
        loss = sum(parts.values())
        if not torch.isfinite(loss):
            raise EditDiverged(
                f"edit of case {case.case_id} diverged at step {it}: "
                f"loss {float(loss.detach())}; nothing applied"
            )
        losses.append(
            {k: float(v.detach()) for k, v in parts.items()}
            | {"p_target": float(target_logp.detach().exp().mean())}
        )
        if log.isEnabledFor(logging.INFO):
            terms_now = ", ".join(f"{k} {v:.4f}" for k, v in losses[-1].items())
            log.info(
                "case %s step %d/%d: loss %.4f (%s)",
                case.case_id,
                it + 1,
                steps,
                float(loss.detach()),
                terms_now,
            )
        watched = loss if stop_on == "total" else parts.get("nll", loss)
        if float(watched.detach()) < early_stop:
            break
        if pmet_schedule:
            argmax = bool((logp[: len(tok_t)].argmax(-1) == tok_t).all())
            if argmax and "kl" in parts and float(parts["kl"].detach()) <= 0.01:
                break
            nll_scale = 0.1 if argmax else 1.0
        if it == steps - 1:  # the last pass only measures, as in the reference
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for site, d in deltas.items():
                limit = clamp_norm * v0[site].norm()
                if d.norm() > limit:
                    d.mul_(limit / d.norm())
    result = {s: d.detach().clone() for s, d in deltas.items()}
    if not all(torch.isfinite(d).all() for d in result.values()):
        raise EditDiverged(f"edit of case {case.case_id} produced a non-finite vector; nothing applied")
    return TargetResult(deltas=result, v0=v0, keys=keys, losses=losses, batch=batch, prompts=prompts)
