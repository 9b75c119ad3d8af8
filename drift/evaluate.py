"""Evaluating a model, edited or not, on edit cases.

Without an editor, the scoring pairs of many cases go through the model together in padded
batches. With an editor, each case is edited, evaluated, and the edit removed before the next
(every case is measured against the same unedited model).

Example:
    >>> import drift
    >>> from drift.data import load_cases
    >>> from drift.metrics import summarise
    >>> model = drift.load_model()                                          # doctest: +SKIP
    >>> rows = evaluate(model, load_cases("builtin", limit=4), fluency=False)
    >>> len(rows), list(rows[0])
    (4, ['case_id', 'subject', 'metrics'])
    >>> [k for k in rows[0]["metrics"] if not k.endswith("_k")]             # ..._k: prompts scored
    ['ES', 'EM', 'PS', 'PM', 'NS', 'NM', 'RS', 'RM', 'DNS', 'DNM']
    >>> summarise([r["metrics"] for r in rows])["NS"]                       # doctest: +SKIP
    100.0
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, ContextManager, Sequence

import torch

from drift import progress as prog
from drift.adapter import Model
from drift.data import EditCase
from drift.metrics import DEFAULT_SCORING, check_scoring, n_gram_entropy, plan_case
from drift.scoring import score_targets

# An editor as evaluation sees it: given the model and a case, a context manager inside which the
# model carries the edit (and after which it is exactly as before).
EditFn = Callable[[Model, EditCase], ContextManager[object]]


def evaluate(
    model: Model,
    cases: Sequence[EditCase],
    *,
    edit: EditFn | None = None,
    fluency: bool = True,
    gen_prompts: int = 2,
    gen_tokens: int = 40,
    ppl_texts: Sequence[str] | None = None,
    batch_cases: int = 16,
    batch_size: int = 32,
    seed: int = 0,
    verbose: bool | None = None,
    progress: bool | None = None,
    on_case: Callable[[dict], None] | None = None,
    scoring: str = DEFAULT_SCORING,
) -> list[dict]:
    """Per-case results ``{"case_id", "subject", "metrics": {...}}`` in the order of ``cases``;
    with an editor also ``"edit"``: :func:`edit_summary` of the case's edit.

    Args:
        edit: an editor (see ``EditFn``); ``None`` evaluates the model as it is.
        fluency: generate from up to ``gen_prompts`` generation prompts per case
            (``gen_tokens`` new tokens, seeded top-5 sampling) and report FL.
        ppl_texts: texts for perplexity (PPL), measured per case on the edited model, or once
            for an unedited one.
        verbose: a bar over the cases (:mod:`drift.progress`; silent by default), each case
            edited and scored quietly under it; ``progress`` is another name for it.
        on_case: called with each finished case's result (for incremental saving).
        scoring: ``"mean"`` (per-token mean log-probability, the reference's) or ``"product"``
            (the whole target's probability); see :mod:`drift.metrics`.
    """
    check_scoring(scoring)
    with prog.verbose(verbose if verbose is not None else progress):
        rows: list[dict] = []
        bar = prog.bar(total=len(cases), desc="evaluating", unit="case", leave=True)
        base_ppl = (
            perplexity(model, ppl_texts, batch_size=batch_size) if (ppl_texts and edit is None) else None
        )
        groups = [[c] for c in cases] if edit is not None else _chunks(cases, batch_cases)
        for group in groups:
            try:  # the edit's computation included: a bad case is named wherever it fails
                quiet = prog.verbose(False)  # the bar only: each edit's loss lines would break it up
                with (
                    quiet,
                    edit(model, group[0]) if edit is not None else contextlib.nullcontext() as applied,
                ):
                    results = _evaluate_group(
                        model, group, fluency, gen_prompts, gen_tokens, batch_size, seed, scoring
                    )
                    if hasattr(applied, "deltas"):  # the editor yielded its Edit
                        results[0]["edit"] = edit_summary(model, applied)
                    if ppl_texts:
                        ppl = (
                            base_ppl
                            if base_ppl is not None
                            else perplexity(model, ppl_texts, batch_size=batch_size)
                        )
                        for r in results:
                            r["metrics"]["PPL"] = ppl
            except ValueError as e:  # e.g. a prompt longer than the model's context
                raise ValueError(f"case(s) {', '.join(c.case_id for c in group)}: {e}") from e
            for r in results:
                rows.append(r)
                if on_case is not None:
                    on_case(r)
            bar.update(len(group))
        bar.close()
        return rows


def edit_summary(model: Model, edit) -> dict:
    """What an applied edit changed: ``{"seconds", "passes", "relative_change": {"mlp_out@4":
    ‖ΔW‖/‖W‖, ...}}`` (‖·‖ Frobenius, W the weight before the edit; call while it is applied)."""
    change = {}
    for d in edit.deltas:
        w = model.weight(d.which, d.layer).detach().double()
        before = w - d.delta.double().to(w.device)
        change[f"{d.which}@{d.layer}"] = float(d.delta.double().norm() / before.norm())
    out = {"relative_change": change}
    if "seconds" in edit.info:
        out["seconds"] = round(float(edit.info["seconds"]), 2)
    if "losses" in edit.info:
        out["passes"] = len(edit.info["losses"])
    return out


def _chunks(seq: Sequence, n: int) -> list[list]:
    return [list(seq[i : i + n]) for i in range(0, len(seq), n)]


def _evaluate_group(model, cases, fluency, gen_prompts, gen_tokens, batch_size, seed, scoring) -> list[dict]:
    plans = [plan_case(c) for c in cases]
    prompts = [p for plan in plans for p, _ in plan.pairs]
    targets = [t for plan in plans for _, t in plan.pairs]
    scores = score_targets(model, prompts, targets, batch_size=batch_size)
    out, start = [], 0
    for case, plan in zip(cases, plans):
        sl = slice(start, start + len(plan.pairs))
        start = sl.stop
        metrics = plan.metrics(scores.logprob[sl], scores.token_acc[sl], scores.n_tokens[sl], scoring)
        out.append({"case_id": case.case_id, "subject": case.subject, "metrics": metrics})
    if fluency:
        # each case's prompts are sampled on their own, so its FL is the same whichever cases
        # share its batch (--batch-cases) and whether an editor runs cases one at a time
        for row, case in zip(out, cases):
            prompts = list(case.generation or ())[:gen_prompts]
            if prompts:
                mine = generate(model, prompts, max_new_tokens=gen_tokens, seed=seed, batch_size=batch_size)
                row["metrics"]["FL"] = n_gram_entropy(mine)
                row["generations"] = mine
    return out


@torch.no_grad()
def generate(
    model: Model,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 40,
    top_k: int = 5,
    seed: int = 0,
    batch_size: int = 32,
) -> list[str]:
    """Seeded top-k sampling with the key-value cache; returns prompt + continuation.

    Prompts of equal token length are sampled together (no padding needed)."""
    ids = [model.encode(p) for p in prompts]
    out: list[str | None] = [None] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(ids):
        by_len.setdefault(len(s), []).append(i)
    for n, idx in sorted(by_len.items()):
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            tokens = torch.tensor([ids[i] for i in chunk])
            sampled = model.sample(tokens, max_new_tokens, top_k=top_k, seed=seed + n * 7919 + start)
            for i, row in zip(chunk, sampled):
                out[i] = prompts[i] + model.tokenizer.decode(row[n:])
    return out  # type: ignore[return-value]


@torch.no_grad()
def perplexity(model: Model, texts: Sequence[str], *, batch_size: int = 32) -> float:
    """Mean over texts of exp(mean next-token NLL); each text is scored on its own tokens."""
    ppls = []
    for start in range(0, len(texts), batch_size):
        seqs = [model.encode(t) for t in texts[start : start + batch_size]]
        tokens, lengths = model.pad(seqs)
        logp = model.forward(tokens).float().log_softmax(-1)  # [batch, pos, vocab]
        nll = -logp[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)  # [batch, pos-1]
        mask = torch.arange(tokens.shape[1] - 1, device=tokens.device)[None] < (lengths[:, None] - 1)
        per_text = (nll * mask).sum(1) / mask.sum(1).clamp(min=1)
        ppls.extend(per_text.exp().tolist())
    return float(sum(ppls) / len(ppls)) if ppls else math.nan
