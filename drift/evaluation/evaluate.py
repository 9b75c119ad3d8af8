"""Evaluating a model, edited or not, on edit cases.

Without an editor, the scoring pairs of many cases go through the model together in padded
batches. With an editor, each case is edited, evaluated, and the edit removed before the next
(every case is measured against the same unedited model). What is measured and how (metric forms,
texts, scoring, seed, batch sizes) is one :class:`drift.evaluation.spec.EvalSpec`.

Example:
    >>> import drift
    >>> from drift.data import load_cases
    >>> from drift.evaluation.metrics import summarise
    >>> model = drift.load_model()                                          # doctest: +SKIP
    >>> from drift.evaluation.spec import EvalSpec
    >>> rows = evaluate(model, load_cases("builtin", limit=4), spec=EvalSpec(fluency=False))
    >>> len(rows), list(rows[0])
    (4, ['case_id', 'subject', 'metrics'])
    >>> [k for k in rows[0]["metrics"] if not k.endswith("_k")]             # ..._k: prompts scored
    ['ES', 'EM', 'PS', 'PM', 'NS', 'NM', 'RS', 'RM', 'DNS', 'DNM']
    >>> summarise([r["metrics"] for r in rows])["NS"]                       # doctest: +SKIP
    100.0
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, ContextManager, Iterator, Sequence

import torch

from drift.data import EditCase
from drift.evaluation.metrics import check_forms, clean_generation, consistency, n_gram_entropy, plan_case
from drift.evaluation.spec import EvalSpec
from drift.model.adapter import Model
from drift.model.scoring import score_targets
from drift.util import progress as prog

# An editor as evaluation sees it: given the model and a case, a context manager inside which the
# model carries the edit (and after which it is exactly as before).
EditFn = Callable[[Model, EditCase], ContextManager[object]]


def evaluate(
    model: Model,
    cases: Sequence[EditCase],
    edit: EditFn | None = None,
    spec: EvalSpec = EvalSpec(),
    *,
    on_case: Callable[[dict], None] | None = None,
    progress: bool | None = None,
) -> list[dict]:
    """Per-case results ``{"case_id", "subject", "metrics": {...}}`` in the order of ``cases``;
    with fluency on also ``"generations"``; with an editor also ``"edit"``: :func:`edit_summary`
    of the case's edit.

    Args:
        edit: an editor (see ``EditFn``); ``None`` evaluates the model as it is.
        spec: what is measured and how (:class:`drift.evaluation.spec.EvalSpec`: the metric forms,
            perplexity texts, reference texts, scoring, seed and batch sizes).
        on_case: called with each finished case's result (for incremental saving; with batched
            edits the cases finish grouped by length, not in their order).
        progress: a bar over the cases (by default; ``False``: none, ``True``: drift's log lines
            too; :mod:`drift.util.progress`), each case edited and scored quietly under it.
    """
    if not isinstance(spec, EvalSpec):
        raise TypeError(
            f"spec must be an EvalSpec (e.g. drift.EvalSpec(fluency=False)), got {type(spec).__name__}"
        )
    if spec.ppl_texts:  # a too-short text is named now, not found as a NaN after every edit
        check_ppl_texts(model, spec.ppl_texts, form=spec.ppl_form)
    with prog.verbose(progress):
        rows: list[tuple[int, dict]] = []
        where = {id(c): i for i, c in enumerate(cases)}
        bar = prog.bar(total=len(cases), desc="evaluating", unit="case", leave=True)
        unedited_ppl = _perplexity(model, spec) if edit is None else None
        for group, carrying in _groups(model, cases, edit, spec):
            results = _evaluate_carrying(model, group, carrying, spec, unedited_ppl)
            for case, r in zip(group, results):
                rows.append((where[id(case)], r))
                if on_case is not None:
                    on_case(r)
            bar.update(len(group))
        bar.close()
        return [r for _, r in sorted(rows, key=lambda pair: pair[0])]  # batched edits go by length


def _perplexity(model: Model, spec: EvalSpec) -> float | None:
    """The perplexity of the spec's texts on the model as it is (``None`` without texts)."""
    if not spec.ppl_texts:
        return None
    return perplexity(model, spec.ppl_texts, batch_size=spec.batch_size, form=spec.ppl_form)


def _evaluate_carrying(
    model: Model,
    group: list[EditCase],
    carrying: Callable[[], ContextManager],
    spec: EvalSpec,
    unedited_ppl: float | None,
) -> list[dict]:
    """The rows of ``group``, scored inside ``carrying()`` (the model with the group's edit, or as
    it is); a ``ValueError`` names the cases wherever it fails, the edit's computation included."""
    try:
        quiet = prog.verbose(False)  # the bar only: each edit's loss lines would break it up
        with quiet, carrying() as applied:
            results = _evaluate_group(model, group, spec)
            if hasattr(applied, "deltas"):  # the editor yielded its Edit
                results[0]["edit"] = edit_summary(model, applied)
            ppl = unedited_ppl if unedited_ppl is not None else _perplexity(model, spec)
            if ppl is not None:
                for r in results:
                    r["metrics"]["PPL"] = ppl
    except ValueError as e:  # e.g. a prompt longer than the model's context
        raise ValueError(f"case(s) {', '.join(c.case_id for c in group)}: {e}") from e
    return results


def _groups(
    model: Model, cases: Sequence[EditCase], edit: EditFn | None, spec: EvalSpec
) -> Iterator[tuple[list[EditCase], Callable[[], ContextManager]]]:
    """``(cases, carrying)`` in turn, ``carrying()`` a context manager in which the model carries
    their edit: unedited groups of ``spec.batch_cases``; one case at a time with an editor, whose
    edits are computed ``spec.edit_batch`` cases at a time where the editor can (cases of similar
    length together, so that little of a batch is padding)."""
    if edit is None:
        for group in _chunks(cases, spec.batch_cases):
            yield group, contextlib.nullcontext
        return
    compute = getattr(edit, "compute", None)
    if compute is not None and hasattr(compute, "many"):
        from drift.editors.target import auto_edit_batch, by_length

        n = auto_edit_batch(model) if spec.edit_batch is None else spec.edit_batch
    if compute is None or not hasattr(compute, "many") or n <= 1 or len(cases) <= 1:
        for case in cases:
            yield [case], functools.partial(edit, model, case)
        return
    for chunk in _chunks(by_length(model, cases), n):
        try:
            with prog.verbose(False):  # the bar only: each edit's loss lines would break it up
                edits = compute.many(model, chunk)
        except ValueError as e:
            raise ValueError(f"case(s) {', '.join(c.case_id for c in chunk)}: {e}") from e
        for case, one in zip(chunk, edits):
            yield [case], functools.partial(one.applied, model)


def edit_summary(model: Model, edit) -> dict:
    """What an applied edit changed: ``{"seconds", "passes", "relative_change": {"mlp_out@4":
    ‖ΔW‖/‖W‖, ...}}`` (‖·‖ Frobenius, W the weight before the edit; call while it is applied)."""
    change = {}
    for d in edit.deltas:
        w = model.weight(d.which, d.layer).detach().double()
        before = w - d.delta.double().to(w.device)
        change[d.weight.result_name] = float(d.delta.double().norm() / before.norm())
    out = {"relative_change": change}
    if "seconds" in edit.info:
        out["seconds"] = round(float(edit.info["seconds"]), 2)
    if "losses" in edit.info:
        out["passes"] = len(edit.info["losses"])
    return out


def _chunks(seq: Sequence, n: int) -> list[list]:
    return [list(seq[i : i + n]) for i in range(0, len(seq), n)]


def _evaluate_group(model: Model, cases: list[EditCase], spec: EvalSpec) -> list[dict]:
    """The rows of ``cases`` on the model as it is now: their prompts scored together, then each
    case's generations (with fluency on)."""
    plans = [plan_case(c, res=spec.res) for c in cases]
    prompts = [p for plan in plans for p, _ in plan.pairs]
    targets = [t for plan in plans for _, t in plan.pairs]
    scores = score_targets(model, prompts, targets, batch_size=spec.batch_size)
    out, start = [], 0
    for case, plan in zip(cases, plans):
        sl = slice(start, start + len(plan.pairs))
        start = sl.stop
        metrics = plan.metrics(scores.logprob[sl], scores.token_acc[sl], scores.n_tokens[sl], spec.scoring)
        out.append({"case_id": case.case_id, "subject": case.subject, "metrics": metrics})
    if spec.fluency:
        for row, case in zip(out, cases):
            _fluency(model, case, row, spec)
    return out


def _fluency(model: Model, case: EditCase, row: dict, spec: EvalSpec) -> None:
    """FL (and RefS, with reference texts) of one case's generations, into ``row``. Each case's
    prompts are sampled on their own, so its FL is the same whichever cases share its batch and
    whether an editor runs cases one at a time."""
    form = spec.fluency_form
    prompts = list(case.generation or ())[: form.prompts]
    if not prompts:
        return
    texts = generate(
        model,
        prompts,
        max_new_tokens=form.new_tokens or 0,
        max_length=form.length,
        seed=spec.seed,
        batch_size=spec.batch_size,
    )
    if form.clean:
        special = list(getattr(model.tokenizer, "all_special_tokens", ()) or ())
        texts = [clean_generation(t, special) for t in texts]
    row["metrics"]["FL"] = n_gram_entropy(texts, words=form.words)
    row["generations"] = texts
    about = spec.references.about(case) if spec.references is not None else None
    if about:
        row["metrics"]["RefS"] = consistency(texts, about, spec.references.stats)


@torch.no_grad()
def generate(
    model: Model,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 40,
    max_length: int | None = None,
    top_k: int = 5,
    seed: int = 0,
    batch_size: int = 32,
) -> list[str]:
    """Seeded top-k sampling with the key-value cache; returns prompt + continuation.

    ``max_length``: instead of ``max_new_tokens``, continue each prompt until it holds that many
    tokens in all (BOS included where the model takes one), as the reference's ``generate_fast``
    with ``max_out_len`` does; a prompt already that long gets no new token.
    Prompts of equal token length are sampled together (no padding needed)."""
    ids = [model.encode(p) for p in prompts]
    out: list[str | None] = [None] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(ids):
        by_len.setdefault(len(s), []).append(i)
    budget = {n: max_new_tokens if max_length is None else max(0, max_length - n) for n in by_len}
    for n, new in budget.items():  # past the context a model samples slowly, from positions never trained
        if n + new > model.cfg.n_ctx:
            more = f" and {new} new tokens" if new else ""
            raise ValueError(
                f"a generation prompt of {n} tokens{more} exceeds the model's context of {model.cfg.n_ctx}"
            )
    for n, idx in sorted(by_len.items()):
        new = budget[n]
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            if new == 0:
                for i in chunk:
                    out[i] = prompts[i]
                continue
            tokens = torch.tensor([ids[i] for i in chunk])
            sampled = model.sample(tokens, new, top_k=top_k, seed=seed + n * 7919 + start)
            for i, row in zip(chunk, sampled):
                out[i] = prompts[i] + model.tokenizer.decode(row[n:])
    return out  # type: ignore[return-value]


@torch.no_grad()
def perplexity(
    model: Model,
    texts: Sequence[str],
    *,
    batch_size: int = 32,
    form: str = "reference",
    max_tokens: int = 100,
) -> float:
    """Perplexity of ``texts``.

    ``form="reference"`` (the reference's): the texts joined by spaces, cut to their first
    ``max_tokens`` tokens x₁…x_L (BOS included where the model takes one), and
    exp(−(1/L) Σ_{t=2..L} log p(x_t | x_<t)) — divided by L, the number of tokens, not by the
    L − 1 predicted, as the reference divides. ``form="per-text"``: the
    mean over texts of exp(mean next-token NLL), each text scored on its own tokens."""
    check_forms(ppl=form)
    check_ppl_texts(model, texts, form=form, max_tokens=max_tokens)
    if form == "reference":
        ids = model.encode(" ".join(texts))[:max_tokens]
        tokens = torch.tensor([ids], device=model.device)
        logp = model.forward(tokens).float().log_softmax(-1)[0]  # [pos, vocab]
        nll = -logp[:-1].gather(-1, tokens[0, 1:, None]).sum()
        return float((nll / len(ids)).exp())
    ppls = []
    for start in range(0, len(texts), batch_size):
        seqs = [model.encode(t) for t in texts[start : start + batch_size]]
        tokens, lengths = model.pad(seqs)
        logp = model.forward(tokens).float().log_softmax(-1)  # [batch, pos, vocab]
        nll = -logp[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)  # [batch, pos-1]
        mask = torch.arange(tokens.shape[1] - 1, device=tokens.device)[None] < (lengths[:, None] - 1)
        per_text = (nll * mask).sum(1) / mask.sum(1).clamp(min=1)
        ppls.extend(per_text.exp().tolist())
    return float(sum(ppls) / len(ppls))


def check_ppl_texts(
    model: Model, texts: Sequence[str], *, form: str = "reference", max_tokens: int = 100
) -> None:
    """Refuse texts too short for a perplexity, naming them: PPL needs at least 2 tokens (one
    predicted), in the texts joined (``form="reference"``) or in each text (``"per-text"``). Run
    before any edit, so a too-short ``--ppl`` file fails in seconds instead of giving a NaN (or a
    perplexity of 1) in every row.

    >>> check_ppl_texts(model, ["Paris is the capital of France."])
    >>> check_ppl_texts(model, ["A fine sentence.", "The"], form="per-text")
    Traceback (most recent call last):
    ...
    ValueError: perplexity needs at least 2 tokens in each text; text 1 ('The') has 1
    """
    if not texts:
        raise ValueError("perplexity needs at least one text")
    if form == "reference":
        n = len(model.encode(" ".join(texts))[:max_tokens])
        if n < 2:
            raise ValueError(
                f"perplexity needs at least 2 tokens; the {len(texts)} text(s) joined give {n}: "
                f"{' '.join(texts)[:40]!r}"
            )
        return
    short = [(i, t, len(model.encode(t))) for i, t in enumerate(texts)]
    short = [(i, t, n) for i, t, n in short if n < 2]
    if short:
        named = ", ".join(f"text {i} ({t[:40]!r}) has {n}" for i, t, n in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise ValueError(f"perplexity needs at least 2 tokens in each text; {named}{more}")
