"""Auditing an edit before it ships: will it leak its new object into unrelated answers?

The main paper ties specificity failure to attention drift: once the edited subject is in the
context, heads over-attend to it and the model answers the edited object to questions about other
things. :func:`audit` measures that risk from the edit and its subject alone, on prompts it writes
itself — never the case's own neighbourhood, distracting or relation prompts, which are what the
risk predicts. Its signals:

- ``leak_context``: the edit sentence "(s, r, o_edit)." followed by questions about unrelated
  facts (:data:`QUESTIONS`): how much the edit raises log P(o_edit) (mean per token, mean over the
  questions). The distracting-neighbourhood failure in miniature.
- ``leak_relation``: the case's own relation asked of other subjects (the prompt with the subject
  replaced by :data:`STAND_INS`), after the edit sentence: the same rise. The neighbourhood
  failure, written without the case's neighbours.
- ``subject_gain``: on the same context prompts, the last token's extra attention to the
  subject's last token, summed over heads and averaged over layers (Table 2's factor 3) — the drift.
- ``head_kl``: the largest per-head KL drift of the last token's attention row, averaged over the
  prompts — whether a few heads swing hard.
- ``update_size``: ‖ΔW‖/‖W‖ of the update (the largest over its layers).

:func:`combine` fits a logistic regression of the failure on the z-scored signals (on one split),
and :func:`validate` reports, per signal and for the combined score, the AUROC with a bootstrap
95% CI, the precision at a chosen recall, and calibration bins. The label of a case is whether the
edit breaks at least one neighbourhood, relation or distracting prompt that the unedited model got
right (:func:`failures`). Because a case with more such prompts has more chances to break one,
the summary also gives the AUROC of the prompt count alone (``baseline_prompt_count``), a score
that knows nothing of the edit: a useful signal must beat it.

Example (the tiny model; on it the numbers mean nothing):
    >>> from drift.editors.rome import ROMEHParams, compute_rome
    >>> edit = compute_rome(model, case, ROMEHParams(layer=0, steps=2))
    >>> risk = audit(model, edit, case)
    >>> sorted(risk.signals)
    ['head_kl', 'leak_context', 'leak_relation', 'subject_gain', 'update_size']
    >>> len(risk.top_heads)                                        # (layer, head, KL) of the largest drifts
    3
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from drift.data import EditCase
from drift.editors.base import Edit
from drift.evaluation.resample import cluster_bootstrap, interval
from drift.model.adapter import Model
from drift.util import progress as prog

# Unrelated facts the audit asks after the edit sentence: (question, its answer). Kept short so
# each is a few tokens; none is about a CounterFact subject's usual relations' objects.
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("The chemical symbol for gold is", "Au"),
    ("The largest planet in the solar system is", "Jupiter"),
    ("Water freezes at a temperature of zero degrees", "Celsius"),
    ("The first man to walk on the Moon was Neil", "Armstrong"),
    ("The author of Romeo and Juliet is William", "Shakespeare"),
    ("The opposite of hot is", "cold"),
)
# What replaces the subject when the audit asks the case's relation of something else.
STAND_INS: tuple[str, ...] = ("It", "Another one", "The other one")
SIGNALS = ("leak_context", "leak_relation", "subject_gain", "head_kl", "update_size")


@dataclass
class Risk:
    """An edit's audit: its signals (higher = riskier) and the heads that drift most."""

    case_id: str
    signals: dict[str, float]
    top_heads: list[tuple[int, int, float]] = field(default_factory=list)  # (layer, head, KL)


def _mean_token_logprob(model: Model, prompts: Sequence[str], target: str) -> torch.Tensor:
    from drift.model.scoring import score_targets

    s = score_targets(model, list(prompts), [target] * len(prompts))
    return s.logprob / s.n_tokens  # [prompts]


def probes(case: EditCase) -> tuple[list[tuple[str, str]], list[str]]:
    """The audit's own prompts for a case: context prompts ``[(text, answer)]`` (edit sentence +
    unrelated question) and relation prompts (edit sentence + the case's prompt about a stand-in)."""
    context = [(f"{case.edit_sentence} {q}", a) for q, a in QUESTIONS]
    # the subject with its article ("The Eiffel Tower is ..." -> "It is ...")
    found = re.search(r"(?:\b[Tt]he )?" + re.escape(case.subject), case.prompt)
    if found is None:
        raise ValueError(
            f"case {case.case_id}: subject {case.subject!r} is not in its prompt {case.prompt!r}"
        )
    head, tail = case.prompt[: found.start()], case.prompt[found.end() :]
    relation = [f"{case.edit_sentence} {head}{s if not head else s.lower()}{tail}" for s in STAND_INS]
    return context, relation


@torch.no_grad()
def audit(model: Model, edit: Edit, case: EditCase, *, top: int = 3, verbose: bool | None = None) -> Risk:
    """The risk signals of ``edit`` (computed, not applied) for ``case`` (module docstring).
    ``verbose``: a bar over the probe prompts by default, ``False`` none (:mod:`drift.util.progress`)."""
    from drift.evaluation.evaluate import edit_summary
    from drift.interp.attention_drift import measure
    from drift.interp.tracing import prepare

    context, relation = probes(case)
    texts = [t for t, _ in context]
    before_c = _mean_token_logprob(model, texts, case.o_edit)
    before_r = _mean_token_logprob(model, relation, case.o_edit)
    with edit.applied(model) as applied:
        after_c = _mean_token_logprob(model, texts, case.o_edit)
        after_r = _mean_token_logprob(model, relation, case.o_edit)
        size = max(edit_summary(model, applied)["relative_change"].values())
    gains, kls = [], []
    with prog.verbose(verbose):
        shown = prog.bar(context, desc="auditing the heads", unit="prompt")
    for text, answer in shown:
        p = prepare(model, case, text, answer, test_start=len(case.edit_sentence) + 1)
        d = measure(model, edit, p, case.o_edit)
        gains.append(d.subject_gain.sum(-1).mean())  # heads summed, layers averaged
        kls.append(d.kl)  # [layers, heads]
    kl = torch.stack(kls).mean(0)  # [layers, heads]
    flat = kl.flatten().topk(min(top, kl.numel()))
    heads = [
        (int(i) // kl.shape[1], int(i) % kl.shape[1], float(v)) for v, i in zip(flat.values, flat.indices)
    ]
    signals = {
        "leak_context": float((after_c - before_c).mean()),
        "leak_relation": float((after_r - before_r).mean()),
        "subject_gain": float(torch.stack(gains).mean()),
        "head_kl": float(torch.stack([k.max() for k in kls]).mean()),
        "update_size": float(size),
    }
    return Risk(case.case_id, signals, heads)


@torch.no_grad()
def outcomes(
    model: Model, edit: Edit, case: EditCase, scoring: str = "mean"
) -> dict[str, dict[str, int]] | None:
    """Per task (NS, RS, DNS): how many prompts the unedited model got right (``"right_before"``)
    and how many of those the edited one gets wrong (``"broken"``); ``None`` when the case has none
    of those prompts. A prompt is right when the true object outscores the edit's object."""
    from drift.evaluation.metrics import plan_case
    from drift.model.scoring import score_targets

    plan = plan_case(case, commonsense=False)
    tasks = {m: plan.comparisons[m] for m in ("NS", "RS", "DNS") if m in plan.comparisons}
    if not tasks:
        return None
    prompts = [p for p, _ in plan.pairs]
    targets = [t for _, t in plan.pairs]

    def right() -> dict[str, torch.Tensor]:
        s = score_targets(model, prompts, targets)
        lp = s.logprob / s.n_tokens if scoring == "mean" else s.logprob
        return {m: torch.tensor([bool(lp[r] > lp[w]) for r, w in cmp]) for m, cmp in tasks.items()}

    before = right()
    with edit.applied(model):
        after = right()
    return {
        "right_before": {m: int(before[m].sum()) for m in tasks},
        "broken": {m: int((before[m] & ~after[m]).sum()) for m in tasks},
    }


def failures(model: Model, edit: Edit, case: EditCase, scoring: str = "mean") -> dict[str, int] | None:
    """The label: per task (NS, RS, DNS), how many prompts the unedited model got right and the
    edited one gets wrong; ``None`` when the case has none of those prompts."""
    out = outcomes(model, edit, case, scoring)
    return None if out is None else out["broken"]


def prompt_counts(case: EditCase) -> dict[str, int]:
    """How many NS, RS and DNS prompts the case has (those :func:`failures` can find broken)."""
    return {
        m: n
        for m, n in (
            ("NS", len(case.neighborhood or ())),
            ("RS", len(case.relation or ())),
            ("DNS", len(case.distracting or ())),
        )
        if n
    }


def auroc(scores: Sequence[float], labels: Sequence[int], weights: Sequence[float] | None = None) -> float:
    """The area under the ROC curve: P(a failing case scores above a sound one), ties half
    (scikit-learn's ``roc_curve`` and ``auc``). With ``weights``, each entry counts that many times
    (a case's broken or kept prompts, say); an entry of weight 0 drops out. NaN without a failing
    or a sound entry.

    >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    from sklearn import config_context
    from sklearn.metrics import auc, roc_curve

    s, y = np.asarray(scores, float), np.asarray(labels, int)
    w = None if weights is None else np.asarray(weights, float)
    if w is not None:
        s, y, w = s[w > 0], y[w > 0], w[w > 0]
    if not (y == 1).any() or not (y == 0).any():
        return math.nan
    # inputs checked above; the bootstrap calls this thousands of times
    with config_context(skip_parameter_validation=True, assume_finite=True):
        fpr, tpr, _ = roc_curve(y, s, sample_weight=w)
        return float(auc(fpr, tpr))


def auroc_ci(
    scores: Sequence[float],
    labels: Sequence[int],
    *,
    weights: Sequence[float] | None = None,
    clusters: Sequence[int] | None = None,
    n: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """A percentile bootstrap interval (95% by default) of :func:`auroc`: cases resampled with
    replacement, or, with ``clusters``, whole clusters (the entries of one edit stay together)."""
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    w = None if weights is None else np.asarray(weights, float)
    draws = cluster_bootstrap(
        lambda i: auroc(s[i], y[i], None if w is None else w[i]), clusters, size=len(s), n=n, seed=seed
    )
    return interval(draws, level)


def per_prompt(
    scores: Sequence[float],
    rows: Sequence[dict],
    *,
    task: str | None = None,
    ci: bool = True,
    n: int = 2000,
    level: float = 0.95,
) -> dict:
    """The AUROC over prompts instead of edits: every prompt the unedited model got right is one
    entry, scored by its edit's score and labelled by whether the edit broke it. A case's number
    of prompts then gives it more entries, not a likelier label, so this view is free of the
    prompt-count confound of the per-edit label. ``rows`` carry ``"failures"`` and
    ``"right_before"``; ``task`` ("NS", "RS" or "DNS") keeps that task's prompts only; the CI
    resamples edits, ``n`` times, at ``level``."""
    s, y, w, c = [], [], [], []
    for k, (score, r) in enumerate(zip(scores, rows)):
        tasks = [t for t in r["right_before"] if task in (None, t)]
        broken, right = sum(r["failures"][t] for t in tasks), sum(r["right_before"][t] for t in tasks)
        for label, weight in ((1, broken), (0, right - broken)):
            if weight > 0:
                s.append(score), y.append(label), w.append(weight), c.append(k)
    out = {
        "auroc": auroc(s, y, w),
        "prompts": int(sum(w)),
        "broken": int(sum(wi for wi, yi in zip(w, y) if yi)),
    }
    if ci:
        out["auroc_ci"] = (
            list(auroc_ci(s, y, weights=w, clusters=c, n=n, level=level)) if s else [math.nan, math.nan]
        )
    return out


def precision_at_recall(scores: Sequence[float], labels: Sequence[int], recall: float = 0.8) -> float:
    """The precision of flagging every case scoring at least the highest threshold that catches
    ``recall`` of the failing cases (scikit-learn's ``precision_recall_curve``: every case tied at
    the threshold is flagged too)."""
    from sklearn.metrics import precision_recall_curve

    if not 0 < recall <= 1:
        raise ValueError(f"recall must be in (0, 1], got {recall}")
    s, y = np.asarray(scores, float), np.asarray(labels, int)
    if y.sum() == 0:
        return math.nan
    precision, recalls, _ = precision_recall_curve(y, s)  # thresholds ascending; last point (1, 0)
    return float(precision[np.flatnonzero(recalls[:-1] >= recall)[-1]])


@dataclass
class Combined:
    """A logistic regression of failure on z-scored signals, fitted on one split."""

    names: list[str]
    mean: list[float]
    std: list[float]
    weights: list[float]  # [bias, one per name]

    def score(self, signals: dict[str, float]) -> float:
        """P(failure) for one edit's signals."""
        z = [(signals[n] - m) / s for n, m, s in zip(self.names, self.mean, self.std)]
        t = self.weights[0] + sum(w * v for w, v in zip(self.weights[1:], z))
        return float(1 / (1 + math.exp(-t)))


def combine(
    rows: Sequence[dict[str, float]], labels: Sequence[int], names: Sequence[str] = SIGNALS
) -> Combined:
    """Fit :class:`Combined`: scikit-learn's ``LogisticRegression`` of the failure on the z-scored
    signals, maximum likelihood with a light ridge (C = 1: λ = 1 on the weights, not the bias),
    which keeps the fit finite on small or separable splits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    X = np.array([[r[n] for n in names] for r in rows], float)
    scaler = StandardScaler().fit(X)  # a constant signal keeps scale 1
    fit = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000)
    fit.fit(scaler.transform(X), np.asarray(labels, int))
    weights = [float(fit.intercept_[0]), *map(float, fit.coef_[0])]
    return Combined(list(names), scaler.mean_.tolist(), scaler.scale_.tolist(), weights)


def calibration(probs: Sequence[float], labels: Sequence[int], bins: int = 5) -> list[dict]:
    """Equal-count bins of the combined score (the first ones a case larger where ``bins`` does not
    divide the cases): mean predicted P(failure) against the observed rate, and the bin's count.
    Not scikit-learn's ``calibration_curve``: its ``"quantile"`` bins cut at interpolated
    percentiles, so bins of uneven size where the cases do not divide evenly, and it returns no
    counts, which the reliability diagram draws."""
    p, y = np.asarray(probs, float), np.asarray(labels, int)
    out = []
    for idx in np.array_split(np.argsort(p), bins):
        if len(idx):
            out.append(
                {"predicted": float(p[idx].mean()), "observed": float(y[idx].mean()), "n": int(len(idx))}
            )
    return out


def validate(
    fit: Sequence[tuple[dict[str, float], int]],
    test: Sequence[tuple[dict[str, float], int]],
    *,
    recall: float = 0.8,
) -> dict:
    """Per signal and for the combined score (fitted on ``fit``, reported on ``test``): AUROC with
    its bootstrap CI, and the precision at ``recall``; plus the combined score's calibration."""
    fitted = combine([s for s, _ in fit], [y for _, y in fit])
    labels = [y for _, y in test]
    out: dict = {"signals": {}, "n": len(test), "n_fit": len(fit), "failing": int(sum(labels))}
    for name in SIGNALS:
        vals = [s[name] for s, _ in test]
        out["signals"][name] = auroc(vals, labels)
    combined = [fitted.score(s) for s, _ in test]
    out["auroc"] = auroc(combined, labels)
    out["auroc_ci"] = list(auroc_ci(combined, labels))
    out["precision_at_recall"] = {str(recall): precision_at_recall(combined, labels, recall)}
    out["calibration"] = calibration(combined, labels)
    out["combined"] = {
        "names": fitted.names,
        "weights": fitted.weights,
        "mean": fitted.mean,
        "std": fitted.std,
    }
    return out


def audit_cases(
    model: Model,
    cases: Sequence[EditCase],
    compute,
    *,
    validate: bool = False,
    scoring: str = "mean",
    on_case=None,
    progress: bool | None = None,
    edit_batch: int | None = None,
) -> list[dict]:
    """Compute each case's edit with ``compute(model, case) -> Edit`` and audit it; with
    ``validate``, also the label (:func:`failures`). One row per case, handed to ``on_case`` as it
    finishes: ``{"case_id", "subject", "metrics": signals, "top_heads", ["failures", "label"]}``.
    Where ``compute`` has ``many`` (:class:`drift.editors.Compute`), ``edit_batch`` cases' edits
    are computed together (``None``: :func:`drift.editors.target.auto_edit_batch`), then each is
    audited alone; rows come in the order of ``cases``. ``progress``: a bar over the edits
    (``None``: by default, :mod:`drift.util.progress`; ``False``: none), each computed quietly."""
    from drift.editors.target import auto_edit_batch, by_length

    def quietly(fn, *args):  # the bar only: each edit's own bar would break it up
        with prog.verbose(False):
            return fn(*args)

    n = auto_edit_batch(model) if edit_batch is None else edit_batch
    if hasattr(compute, "many") and n > 1:
        ordered = by_length(model, cases)
        chunks = [ordered[i : i + n] for i in range(0, len(ordered), n)]
        pairs = ((c, e) for chunk in chunks for c, e in zip(chunk, quietly(compute.many, model, chunk)))
    else:
        pairs = ((case, quietly(compute, model, case)) for case in cases)
    where = {id(c): i for i, c in enumerate(cases)}
    rows = []
    with prog.bars(progress):
        shown = prog.bar(pairs, total=len(cases), desc="auditing", unit="edit", leave=True)
    for case, edit in shown:
        risk = quietly(audit, model, edit, case)
        row = {"case_id": case.case_id, "subject": case.subject, "metrics": risk.signals}
        row["top_heads"] = [list(h) for h in risk.top_heads]
        if validate:
            out = outcomes(model, edit, case, scoring)
            row["failures"] = None if out is None else out["broken"]
            row["right_before"] = None if out is None else out["right_before"]
            row["prompts"] = prompt_counts(case)
            row["label"] = None if out is None else int(sum(out["broken"].values()) > 0)
        rows.append((where[id(case)], row))
        if on_case is not None:
            on_case(row)
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])]


def report(rows: Sequence[dict], fit_rows: Sequence[dict] | None = None, recall: float = 0.8) -> dict:
    """The summary of labelled audit rows. The combined score of a case never comes from a fit
    that saw it: fitted on ``fit_rows`` (another run's rows) when given, else two-fold
    cross-fitting (folds stratified by label; each fold's fit scores the other). Rows that record
    ``"right_before"`` also get the per-prompt view (:func:`per_prompt`) under ``"per_prompt"``."""
    kept = [r for r in rows if r.get("label") is not None]
    labelled = [(r["metrics"], r["label"]) for r in kept]

    failing = sum(y for _, y in labelled)
    too_few = len(labelled) < 4 or failing == 0 or failing == len(labelled)

    def not_enough(why: str) -> dict:
        """No AUROC where it cannot be estimated: ``None`` (JSON null) with the reason in "note";
        each signal's own AUROC only from 4 edits of both kinds on (fewer give 0, 0.5 or 1 by
        chance)."""
        signals = {
            name: None if too_few else auroc([s[name] for s, _ in labelled], [y for _, y in labelled])
            for name in SIGNALS
        }
        return {
            "n": len(labelled),
            "failing": failing,
            "auroc": None,
            "auroc_ci": [None, None],
            "signals": signals,
            "precision_at_recall": {str(recall): None},
            "fit": "none",
            "note": why,
        }

    if too_few:
        return not_enough(
            f"{len(labelled)} labelled edit(s), {failing} failing: the AUROC needs at least 4 edits, "
            "failing and sound ones both"
        )
    if fit_rows is not None:
        fit = [(r["metrics"], r["label"]) for r in fit_rows if r.get("label") is not None]
        out = validate(fit, labelled, recall=recall)
        out["fit"] = "another run"
        fitted = combine([s for s, _ in fit], [y for _, y in fit])
        return out | _baseline(kept, [fitted.score(s) for s, _ in labelled])
    # two folds, stratified: failing and sound edits alternate between them, so each fold has both
    folds: tuple[list[int], list[int]] = ([], [])
    for cls in (0, 1):
        for i, k in enumerate([k for k, (_, y) in enumerate(labelled) if y == cls]):
            folds[i % 2].append(k)
    if any(len({labelled[k][1] for k in fold}) < 2 for fold in folds):
        return not_enough(
            f"{failing} failing of {len(labelled)}: too few to fit on one half and score the other"
        )
    combined = [math.nan] * len(labelled)
    for fit, test in ((folds[0], folds[1]), (folds[1], folds[0])):
        fitted = combine([labelled[k][0] for k in fit], [labelled[k][1] for k in fit])
        for k in test:
            combined[k] = fitted.score(labelled[k][0])
    labels = [y for _, y in labelled]
    out = validate(labelled, labelled, recall=recall)  # per-signal AUROCs need no fit
    out["auroc"] = auroc(combined, labels)
    out["auroc_ci"] = list(auroc_ci(combined, labels))
    out["precision_at_recall"] = {str(recall): precision_at_recall(combined, labels, recall)}
    out["calibration"] = calibration(combined, labels)
    out["fit"] = "two-fold cross-fitting, stratified by label"
    return out | _baseline(kept, combined)


def _baseline(rows: Sequence[dict], combined: Sequence[float]) -> dict:
    """What a signal must beat, and the view that removes the need: the AUROC of a case's number
    of NS/RS/DNS prompts alone, which knows nothing of the edit (a case with more prompts has more
    chances to break one), and, where rows record ``"right_before"``, every signal per prompt."""
    out: dict = {}
    if all("prompts" in r for r in rows):
        counts = [sum(r["prompts"].values()) for r in rows]
        out["baseline_prompt_count"] = auroc(counts, [r["label"] for r in rows])
    if all(r.get("right_before") is not None for r in rows):
        view = {
            name: per_prompt([r["metrics"][name] for r in rows], rows, ci=False)["auroc"] for name in SIGNALS
        }
        out["per_prompt"] = {
            "signals": view,
            "combined": per_prompt(combined, rows),
            "baseline_right_before": per_prompt(
                [sum(r["right_before"].values()) for r in rows], rows, ci=False
            )["auroc"],
            "tasks": {},
        }
        for task in ("NS", "RS", "DNS"):
            views = {
                name: per_prompt([r["metrics"][name] for r in rows], rows, task=task, ci=False)
                for name in SIGNALS
            }
            counts = views[SIGNALS[0]]  # the prompts and broken ones are the same for every signal
            out["per_prompt"]["tasks"][task] = {
                "prompts": counts["prompts"],
                "broken": counts["broken"],
                "signals": {name: v["auroc"] for name, v in views.items()},
            }
    return out
