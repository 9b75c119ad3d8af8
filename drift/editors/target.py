"""Finding target vectors: gradient descent on vectors added at sites of the subject's last token.

ROME adds δ to the MLP output of its layer, MEMIT to the residual stream after the last layer of
its range, PMET to both the attention and the MLP outputs of the last critical layer; all share
this routine. Each step is **one** batched forward/backward over every context-prefixed
rewriting sequence and the "{subject} is a" prompt, that **starts at the first edited layer**
from a residual stream cached once (nothing below it changes), and unembeds **only** the positions
where a target token or the KL distribution is read. :func:`optimise_many` puts several cases'
rows in that one batch (each case keeping its own vectors, optimiser, stopping and loss terms), so
a device runs one large step instead of many small ones.

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

from drift.data import EditCase
from drift.editors.objectives import EditBatch, LossTerm, Step
from drift.model.adapter import Model, Prefix
from drift.model.sites import Site  # where a vector is added, e.g. Site("mlp_out", 4); a plain pair works too
from drift.util import progress
from drift.util.reprs import fields_repr

log = logging.getLogger(__name__)


class EditDiverged(RuntimeError):
    """The optimisation produced NaN or inf; nothing was applied to the model. Its message ends
    with what to change: a smaller step size or SADR weight."""

    def __str__(self) -> str:
        return super().__str__() + "; a smaller step size (--hp lr=...) or SADR γ (--sadr) may keep it finite"


@dataclass
class TargetResult:
    deltas: dict[Site, Tensor]  # the optimised vectors [d_model]
    v0: dict[Site, Tensor]  # each site's original output at the subject's last token, bare prompt
    keys: dict[int, Tensor]  # layer -> [n_prompts, d_mlp] MLP keys at the subject's last token
    losses: list[dict[str, float]] = field(default_factory=list)
    batch: EditBatch | None = None
    prompts: list[str] = field(default_factory=list)
    terms: list[LossTerm] = field(default_factory=list)  # the loss terms this case was optimised with

    __repr__ = fields_repr


@dataclass
class _CaseRows:
    """One case's rows of the optimisation batch, before padding: its context-prefixed rewriting
    sequences (prefix + prompt + o_edit[:-1]), then the KL prompt "{subject} is a"."""

    seqs: list[list[int]]
    lookup: list[int]  # the subject's last token in each sequence
    query: list[int]  # the position predicting o_edit's first token (KL row: its last token)
    target: list[int]  # o_edit's tokens
    prompts: list[str]  # the context-prefixed rewriting prompts


def _case_rows(model: Model, case: EditCase, prefixes: Sequence[str]) -> _CaseRows:
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
    return _CaseRows(seqs, lookup, query, target, prompts)


def _joined(model: Model, built: Sequence[_CaseRows], start_layer: int) -> tuple[EditBatch, list[Tensor]]:
    """Every case's rows in one padded batch, case after case; and each case's row indices."""
    seqs = [s for b in built for s in b.seqs]
    tokens, lengths = model.pad(seqs)
    device = tokens.device
    spans, at = [], 0
    for b in built:
        spans.append(torch.arange(at, at + len(b.seqs), device=device))
        at += len(b.seqs)
    batch = EditBatch(
        tokens=tokens,
        lookup=torch.tensor([l for b in built for l in b.lookup], device=device),
        query=torch.tensor([q for b in built for q in b.query], device=device),
        n_rewrite=len(built[0].prompts) if len(built) == 1 else 0,
        start_layer=start_layer,
        lengths=lengths,
    )
    return batch, spans


def build_batch(
    model: Model, case: EditCase, prefixes: Sequence[str], start_layer: int
) -> tuple[EditBatch, list[list[int]], list[str]]:
    """Tokenise the rewriting sequences (prefix + prompt + o_edit[:-1]) and the KL prompt."""
    rows = _case_rows(model, case, prefixes)
    batch, _ = _joined(model, [rows], start_layer)
    return batch, [rows.target] * len(rows.prompts), rows.prompts


def _own_batch(batch: EditBatch, span: Tensor, n_rewrite: int) -> EditBatch:
    """One case's rows of a joined batch, as :func:`build_batch` lays them out for it alone."""
    lengths = batch.lengths[span]
    return EditBatch(
        tokens=batch.tokens[span][:, : int(lengths.max())],
        lookup=batch.lookup[span],
        query=batch.query[span],
        n_rewrite=n_rewrite,
        start_layer=batch.start_layer,
        lengths=lengths,
    )


@dataclass(eq=False)
class _CaseState:
    """What one case carries through the steps of :func:`optimise_many`."""

    case: EditCase
    rows: Tensor  # its rows of the joined batch: rewriting rows, then the KL row
    n_rewrite: int
    targets: list[int]
    terms: list[LossTerm]
    deltas: dict[Site, Tensor]
    prompts: list[str]
    opt: torch.optim.Optimizer | None = None
    v0: dict[Site, Tensor] = field(default_factory=dict)
    keys: dict[int, Tensor] = field(default_factory=dict)
    losses: list[dict[str, float]] = field(default_factory=list)
    vanilla_kl: Tensor | None = None
    nll_scale: float = 1.0
    extras: dict = field(default_factory=dict)


@dataclass
class _Layout:
    """The rows a step runs (those of the cases still optimising) and where it reads logits."""

    states: list[_CaseState]
    resid: Tensor  # [rows, pos, d_model] the residual entering the first edited layer
    prefix: Prefix | None
    local: list[Tensor]  # per case: its rows' indices in this layout
    at: Tensor  # [rows] the subject's last token of each row, as an activation position
    owner: Tensor  # [rows] the case (index into ``states``) each row belongs to
    read_rows: Tensor  # [reads] target tokens of every rewriting row, then every KL row
    read_cols: Tensor
    read_tok: Tensor  # [target reads]
    read_owner: Tensor  # [target reads] the row each target read belongs to
    read_count: Tensor  # [rows] target tokens per row (0 for KL rows)
    target_reads: list[slice]  # per case: its target reads
    kl_at: list[Tensor]  # per case: indices of its KL reads among the KL reads
    n_rows: int

    @classmethod
    def of(cls, states: list[_CaseState], run: EditBatch, resid: Tensor, prefix: Prefix | None) -> "_Layout":
        keep = torch.cat([s.rows for s in states])
        if len(keep) < resid.shape[0]:
            resid = resid[keep]
            prefix = prefix.select(keep) if prefix is not None else None
        device = resid.device
        local, at_, owner, reads, toks, read_owner, kl_reads, target_reads, kl_owner = ([] for _ in range(9))
        counts = [0] * len(keep)
        i = 0
        for j, s in enumerate(states):
            mine = list(range(i, i + len(s.rows)))
            local.append(torch.tensor(mine, device=device))
            first = len(reads)
            for k, g in enumerate(s.rows.tolist()):
                at_.append(int(run.lookup[g]) - run.offset)
                owner.append(j)
                if k < s.n_rewrite:
                    q = int(run.query[g]) - run.offset
                    for t, tok in enumerate(s.targets):
                        reads.append((mine[k], q + t))
                        toks.append(tok)
                        read_owner.append(mine[k])
                    counts[mine[k]] = len(s.targets)
                else:
                    kl_reads.append((mine[k], at_[-1]))
                    kl_owner.append(j)
            target_reads.append(slice(first, len(reads)))
            i += len(s.rows)
        every = reads + kl_reads
        kl_owner_t = torch.tensor(kl_owner, device=device)
        return cls(
            states=list(states),
            resid=resid,
            prefix=prefix,
            local=local,
            at=torch.tensor(at_, device=device),
            owner=torch.tensor(owner, device=device),
            read_rows=torch.tensor([r for r, _ in every], device=device),
            read_cols=torch.tensor([c for _, c in every], device=device),
            read_tok=torch.tensor(toks, device=device),
            read_owner=torch.tensor(read_owner, device=device),
            read_count=torch.tensor(counts, device=device, dtype=torch.float),
            target_reads=target_reads,
            kl_at=[torch.nonzero(kl_owner_t == j).flatten() for j in range(len(states))],
            n_rows=len(keep),
        )

    def view(self, j: int, run: EditBatch) -> EditBatch:
        """Case ``j``'s rows as a loss term sees them: ``rows`` its rows in this step's
        activations, ``lookup``/``query`` the columns of the joined batch."""
        s = self.states[j]
        return EditBatch(
            tokens=run.tokens[s.rows],
            lookup=run.lookup[s.rows],
            query=run.query[s.rows],
            n_rewrite=s.n_rewrite,
            start_layer=run.start_layer,
            lengths=None if run.lengths is None else run.lengths[s.rows],
            offset=run.offset,
            rows=self.local[j],
        )


def _delta_hooks(
    model: Model,
    lay: _Layout,
    sites: Sequence[Site],
    key_layers: Sequence[int],
    start: int,
    block_attention_grad: bool,
) -> list:
    """Hooks that add each case's vector at its rows' subject's last token (recording v₀, the
    bare prompt's output there, on the first pass), record MLP keys, and for ROME-AWD stop the
    gradient through attention weights."""
    rows = torch.arange(lay.n_rows, device=lay.at.device)

    def add_delta(site: Site):
        def fn(act: Tensor, hook) -> Tensor:
            for j, s in enumerate(lay.states):
                if site not in s.v0:
                    bare = int(lay.local[j][0])  # the empty prefix comes first
                    s.v0[site] = act[bare, lay.at[bare]].detach().to(torch.float32, copy=True)
            stacked = torch.stack([s.deltas[site] for s in lay.states])  # [cases, d_model]
            out = act.clone()
            out[rows, lay.at] = (out[rows, lay.at] + stacked[lay.owner]).to(out.dtype)
            return out

        return fn

    def record_keys(act: Tensor, hook) -> None:
        layer = int(hook.name.split(".")[1])
        for j, s in enumerate(lay.states):
            if layer not in s.keys:
                mine = lay.local[j][: s.n_rewrite]
                s.keys[layer] = act[mine, lay.at[mine]].detach().to(torch.float32, copy=True)

    def detach(act: Tensor, hook) -> Tensor:
        return act.detach()

    hooks = [(model.hook_name(site), add_delta(site)) for site in sites]
    hooks += [(model.hook_name("mlp_key", l), record_keys) for l in key_layers]
    if block_attention_grad:
        hooks += [(model.hook_name("pattern", l), detach) for l in range(start, model.cfg.n_layers)]
    return hooks


def _stops(
    s: _CaseState,
    parts: dict,
    loss: Tensor,
    tok_logp: Tensor,
    tok: Tensor,
    early_stop: float,
    stop_on: str,
    pmet_schedule: bool,
) -> bool:
    """Whether case ``s`` stops after this pass (its early stop, or PMET's KL stop); under PMET's
    schedule, also set the NLL weight of its next pass."""
    watched = loss if stop_on == "total" else parts.get("nll", loss)
    if float(watched.detach()) < early_stop:
        return True
    if pmet_schedule:
        argmax = bool((tok_logp.argmax(-1) == tok).all())  # every target token already the argmax
        if argmax and "kl" in parts and float(parts["kl"].detach()) <= 0.01:
            return True
        s.nll_scale = 0.1 if argmax else 1.0
    return False


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


# On a CPU a step is bound by arithmetic, which a batch does not reduce (and its padding adds to):
# one case at a time there (BENCHMARKS.md, "Batched editing"). On a GPU a case alone is bound by
# kernel launches, and a batch fills the device.
CPU_EDIT_BATCH = 1
MAX_EDIT_BATCH = 64


def case_bytes(model: Model, rows: int = 23, columns: int = 24) -> int:
    """A generous estimate of one case's activation memory in the target optimisation: ``rows``
    sequences (ROME's 21 generated prefixes, the bare prompt and the KL prompt) of ``columns``
    running columns, each layer keeping ~10 d_model-wide, 4 d_mlp-wide and 2 attention rows
    per token for the backward pass, in the model's dtype."""
    cfg = model.cfg
    per_token = 10 * cfg.d_model + 4 * cfg.d_mlp + 2 * cfg.n_heads * 2 * columns
    size = torch.finfo(getattr(cfg, "dtype", torch.float32)).bits // 8
    return rows * columns * cfg.n_layers * per_token * size


def by_length(model: Model, cases: Sequence[EditCase]) -> list[EditCase]:
    """``cases`` ordered by the columns each step runs for them (the prompt's tokens from the
    subject's last one on, plus the new object's), then by prompt length: consecutive cases make
    batches with little padding (a batch runs as many columns as its longest row)."""

    def columns(case: EditCase) -> tuple[int, int]:
        n = len(model.encode(case.prompt))
        try:
            last = model.subject_positions(case.prompt, case.subject, start=case.subject_at(case.prompt, 0))[
                -1
            ]
        except ValueError:  # named when its edit is computed
            last = 0
        return n - last + len(model.encode_target(case.o_edit)), n

    return sorted(cases, key=columns)


def auto_edit_batch(model: Model) -> int:
    """How many cases' target vectors to optimise together by default: on a CUDA device as many
    as half its free memory holds (:func:`case_bytes`), at most :data:`MAX_EDIT_BATCH`; on a
    CPU :data:`CPU_EDIT_BATCH`."""
    device = torch.device(model.device)
    if device.type != "cuda":
        return CPU_EDIT_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    return int(max(1, min(MAX_EDIT_BATCH, free // 2 // case_bytes(model))))


def optimise_targets(
    model: Model,
    case: EditCase,
    sites: Sequence[Site],
    terms: Sequence[LossTerm],
    **options,
) -> TargetResult:
    """Optimise one vector per site for one case (see the module docstring and
    :func:`optimise_many`, which takes the same options). The model is never changed; the loss
    terms are used as given (a :class:`~drift.editors.sadr.SADR` term's ``report`` is filled)."""
    return optimise_many(model, [case], sites, terms, **options)[0]


def optimise_many(
    model: Model,
    cases: Sequence[EditCase],
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
) -> list[TargetResult]:
    """Optimise one vector per site for each case, every case's rows in **one** forward/backward
    per step; each case has its own vectors, Adam state, norm clamp, early stop, KL prompt and
    loss terms (a copy of ``terms`` per case, :meth:`LossTerm.fresh`, when there are several),
    so each result is what :func:`optimise_targets` computes for that case alone, up to float
    rounding. A case that has stopped leaves the batch: later steps run only the others' rows.

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
            :attr:`drift.model.adapter.Model.supports_prefix`); ``False`` runs every column each step.
            Both compute the same δ and losses up to float rounding.

    Example:
        >>> from drift.editors.objectives import default_terms
        >>> many = optimise_many(model, cases[:2], [("mlp_out", 1)], default_terms(0.0625, 0.5), steps=3)
        >>> [len(r.losses) for r in many]                                    # each case's passes
        [3, 3]
    """
    if stop_on not in ("total", "nll"):
        raise ValueError(f"stop_on must be 'total' or 'nll', got {stop_on!r}")
    if not cases:
        return []
    sites = [Site.of(s) for s in sites]
    start = min(site.layer for site in sites)
    if any(l < start for l in key_layers):
        raise ValueError(f"key layers {list(key_layers)} must be at or after the first edited layer {start}")
    built = _all_case_rows(model, cases, prefixes)
    batch, spans = _joined(model, built, start)
    run, resid, prefix = _first_layer_input(model, batch, start, prefix_cache)
    states = _case_states(model, cases, built, spans, terms, sites, lr, resid.device)
    loop = _Loop(
        model, run, sites, start, key_layers, block_attention_grad, steps, early_stop, stop_on, pmet_schedule
    )
    layout = _Layout.of(states, run, resid, prefix)
    N = len(cases)
    shown = progress.bar(total=steps, desc=f"editing {N} case{'s' if N > 1 else ''}", unit="step")
    for it in range(steps):
        shown.update()
        stepping, total = loop.pass_(layout, it)
        if not stepping:
            break
        _update(stepping, total, clamp_norm)
        if len(stepping) < len(layout.states):  # stopped cases leave the batch
            layout = _Layout.of(stepping, run, resid, prefix)
    shown.close()
    return [_result(s, batch) for s in states]


def _all_case_rows(model: Model, cases: Sequence[EditCase], prefixes: Sequence[str]) -> list[_CaseRows]:
    """Each case's rows; a bad case in a batch is named by its id."""
    built = []
    for case in cases:
        try:
            built.append(_case_rows(model, case, prefixes))
        except ValueError as e:  # e.g. the subject not in its prompt
            raise ValueError(f"case {case.case_id}: {e}") if len(cases) > 1 else e
    return built


def _first_layer_input(
    model: Model, batch: EditBatch, start: int, prefix_cache: bool
) -> tuple[EditBatch, Tensor, Prefix | None]:
    """What every step starts from, computed once: the batch as each step sees it, the residual
    stream entering layer ``start`` (``[rows, rest, d_model]``, only the columns from each row's
    subject's last token on, with the ``Prefix`` holding the keys and values of the columns before
    it; or ``[rows, pos, d_model]``, every column, and no prefix)."""
    if prefix_cache and model.supports_prefix:
        tokens, mask, positions, P = left_aligned(batch, model.pad_id)
        resid, prefix = model.prefix(tokens, mask, positions, P, start)  # [rows, rest, d_model]
        shift = P - batch.lookup  # row r's column = its position + shift[r]
        run = replace(batch, lookup=batch.lookup + shift, query=batch.query + shift, offset=P)
        return run, resid, prefix
    with torch.no_grad():
        resid = model.capture(batch.tokens, "resid_pre", start)  # [rows, pos, d_model], cached once
    return batch, resid, None


def _case_states(
    model: Model,
    cases: Sequence[EditCase],
    built: Sequence[_CaseRows],
    spans: Sequence[Tensor],
    terms: Sequence[LossTerm],
    sites: Sequence[Site],
    lr: float,
    device: torch.device,
) -> list[_CaseState]:
    """Each case's state before the first step: δ = 0 ``[d_model]`` per site, its own Adam and
    (with several cases) its own copy of the loss terms."""
    N = len(cases)
    states = [
        _CaseState(
            case=case,
            rows=span,
            n_rewrite=len(rows.prompts),
            targets=rows.target,
            terms=list(terms) if N == 1 else [t.fresh() for t in terms],
            deltas={s: torch.zeros(model.cfg.d_model, device=device, requires_grad=True) for s in sites},
            prompts=rows.prompts,
        )
        for case, rows, span in zip(cases, built, spans)
    ]
    for s in states:
        s.opt = torch.optim.Adam(list(s.deltas.values()), lr=lr)
    return states


@dataclass
class _Loop:
    """What each pass of :func:`optimise_many` runs with besides the layout: the model, the batch as
    each step sees it, the sites and the loop's settings."""

    model: Model
    run: EditBatch  # the joined batch as each step sees it
    sites: list[Site]
    start: int  # the first edited layer
    key_layers: Sequence[int]
    block_attention_grad: bool
    steps: int
    early_stop: float
    stop_on: str
    pmet_schedule: bool

    def pass_(self, lay: _Layout, it: int) -> tuple[list[_CaseState], Tensor | None]:
        """Pass ``it`` over ``lay``'s rows: every case's losses recorded; the cases that take a
        step after it (not stopped, not the last pass), and the sum of their losses."""
        logp, row_lp = self.forward(lay)
        kl_all = logp[len(lay.read_tok) :]  # [KL reads, vocab]
        total, stepping = None, []
        for j, s in enumerate(lay.states):
            parts, loss = self.case_loss(lay, j, it, row_lp, kl_all)
            reads = lay.target_reads[j]
            tok_logp, tok = logp[reads], lay.read_tok[reads]
            stops = _stops(s, parts, loss, tok_logp, tok, self.early_stop, self.stop_on, self.pmet_schedule)
            if stops or it == self.steps - 1:
                continue  # the last pass only measures, as in the reference
            stepping.append(s)
            total = loss if total is None else total + loss
        return stepping, total

    def forward(self, lay: _Layout) -> tuple[Tensor, Tensor]:
        """One forward pass with every case's vectors added and its terms' hooks: the log-probs
        at every read (``[reads, vocab]``: target reads, then KL reads) and each row's mean
        log-prob of its target tokens (``[rows]``, 0 for KL rows)."""
        model = self.model
        hooks = _delta_hooks(model, lay, self.sites, self.key_layers, self.start, self.block_attention_grad)
        for j, s in enumerate(lay.states):
            s.extras = {"model": model, "batch": lay.view(j, self.run)}  # what terms' hooks may need
            for term in s.terms:
                hooks += list(term.hooks(s.extras["batch"], s.extras))
        logits = model.logits_at(
            lay.resid, lay.read_rows, lay.read_cols, hooks, start_at_layer=self.start, prefix=lay.prefix
        )
        logp = logits.float().log_softmax(-1)
        tok_lp = logp[: len(lay.read_tok)].gather(-1, lay.read_tok[:, None]).squeeze(-1)
        row_lp = torch.zeros(lay.n_rows, device=logp.device).index_add(0, lay.read_owner, tok_lp)
        return logp, row_lp / lay.read_count.clamp(min=1)

    def case_loss(
        self, lay: _Layout, j: int, it: int, row_lp: Tensor, kl_all: Tensor
    ) -> tuple[dict[str, Tensor], Tensor]:
        """Case ``j``'s loss terms at pass ``it`` and their sum, from its rows' mean target
        log-probs (``row_lp`` ``[rows]``) and its KL reads' log-probs (among ``kl_all``
        ``[KL reads, vocab]``); recorded in its losses, logged, refused if not finite."""
        s = lay.states[j]
        target_logp = row_lp[lay.local[j][: s.n_rewrite]]
        kl_logp = kl_all[lay.kl_at[j]]
        if s.vanilla_kl is None:  # step 0 runs with δ = 0: the unedited model
            s.vanilla_kl = kl_logp.detach()
        step = Step(
            step=it,
            target_logp=target_logp,
            kl_logp=kl_logp,
            vanilla_kl_logp=s.vanilla_kl,
            deltas={str(k): d for k, d in s.deltas.items()},  # "mlp_out@4"
            v0_norms={str(k): s.v0[k].norm() for k in s.deltas},
            extras=s.extras,
            nll_scale=s.nll_scale,
        )
        parts = {term.name: term(step) for term in s.terms}
        loss = sum(parts.values())
        if not torch.isfinite(loss):
            raise EditDiverged(
                f"edit of case {s.case.case_id} diverged at step {it}: "
                f"loss {float(loss.detach())}; nothing applied"
            )
        s.losses.append(
            {k: float(v.detach()) for k, v in parts.items()}
            | {"p_target": float(target_logp.detach().exp().mean())}
        )
        if log.isEnabledFor(logging.INFO):
            terms_now = ", ".join(f"{k} {v:.4f}" for k, v in s.losses[-1].items())
            log.info(
                "case %s step %d/%d: loss %.4f (%s)",
                s.case.case_id,
                it + 1,
                self.steps,
                float(loss.detach()),
                terms_now,
            )
        return parts, loss


def _update(stepping: list[_CaseState], total: Tensor, clamp_norm: float) -> None:
    """One Adam step of each case in ``stepping`` on the gradient of ``total`` (the sum of their
    losses: each case's vectors get the gradient of its own loss only), then each δ clamped to
    ``clamp_norm · ‖v₀‖``."""
    for s in stepping:
        s.opt.zero_grad()
    total.backward()
    with torch.no_grad():
        for s in stepping:
            s.opt.step()
            for site, d in s.deltas.items():
                limit = clamp_norm * s.v0[site].norm()
                if d.norm() > limit:
                    d.mul_(limit / d.norm())


def _result(s: _CaseState, batch: EditBatch) -> TargetResult:
    """Case ``s``'s result, its rows of the joined ``batch`` laid out as for it alone."""
    out = {site: d.detach().clone() for site, d in s.deltas.items()}
    if not all(torch.isfinite(d).all() for d in out.values()):
        raise EditDiverged(f"edit of case {s.case.case_id} produced a non-finite vector; nothing applied")
    return TargetResult(
        deltas=out,
        v0=s.v0,
        keys=s.keys,
        losses=s.losses,
        batch=_own_batch(batch, s.rows, s.n_rewrite),
        prompts=s.prompts,
        terms=s.terms,
    )
