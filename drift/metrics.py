"""Edit-evaluation metrics (main paper §2.1 and App. E.1), as pure functions.

Each task compares two continuations of the same prompt; its score is the fraction of prompts
where the right one is more likely, its magnitude the mean probability of the right one:

===========  ========================================  =============  ==========
task         prompts                                   right          wrong
===========  ========================================  =============  ==========
ES / EM      the rewrite prompt(s)                     o_edit         o_true
PS / PM      paraphrases of the rewrite prompt         o_edit         o_true
NS / NM      other subjects, same relation             o_true         o_edit
RS / RM      same subject, other relations             its answer     o_edit
DNS / DNM    edit sentence ⊕ neighbourhood prompt      o_true         o_edit
OS / DOS     commonsense item (plain / ⊕ edit)         right choice   wrong one
===========  ========================================  =============  ==========

OS and DOS compare length-normalised log-probabilities (the choices differ in length). RES is
the teacher-forced token accuracy of the reasoning answer (the target is a chain's end, with no
competing object). All scores are percentages; a case's score is the mean over its prompts and
the summary is the mean over cases with a 95% t-interval. Avg S is the harmonic mean of ES, PS,
NS, RS and DNS. FL is the weighted bi-/tri-gram entropy of generated text.

Example:
    >>> plan = CasePlan()
    >>> i = plan.pair("The Eiffel Tower is in", "Rome"); j = plan.pair("The Eiffel Tower is in", "Paris")
    >>> plan.compare("ES", i, j)
    >>> import torch
    >>> plan.metrics(torch.tensor([-0.1, -3.0]), torch.tensor([1.0, 1.0]), torch.tensor([1, 1]))["ES"]
    100.0
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from scipy import stats
from torch import Tensor

from drift.data import EditCase

SCORE_MAGNITUDE = {"ES": "EM", "PS": "PM", "NS": "NM", "RS": "RM", "DNS": "DNM"}
AVG_OF = ("ES", "PS", "NS", "RS", "DNS")
NORMALISED = {"OS", "DOS"}  # compared by mean log-prob per token


@dataclass
class CasePlan:
    """The (prompt, target) pairs a case needs, and which pairs each metric compares."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    comparisons: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    accuracies: dict[str, list[int]] = field(default_factory=dict)

    def pair(self, prompt: str, target: str) -> int:
        self.pairs.append((prompt, target))
        return len(self.pairs) - 1

    def compare(self, metric: str, right: int, wrong: int) -> None:
        self.comparisons.setdefault(metric, []).append((right, wrong))

    def accuracy(self, metric: str, idx: int) -> None:
        self.accuracies.setdefault(metric, []).append(idx)

    def metrics(self, logprob: Tensor, token_acc: Tensor, n_tokens: Tensor) -> dict[str, float]:
        """Percent scores from the pairs' ``logprob [n]``, ``token_acc [n]`` and ``n_tokens [n]``."""
        out: dict[str, float] = {}
        for name, cmp in self.comparisons.items():
            right = [r for r, _ in cmp]
            wrong = [w for _, w in cmp]
            a, b = logprob[right], logprob[wrong]
            if name in NORMALISED:
                a, b = a / n_tokens[right], b / n_tokens[wrong]
            out[name] = 100.0 * float((a > b).float().mean())
            if name in SCORE_MAGNITUDE:
                out[SCORE_MAGNITUDE[name]] = 100.0 * float(logprob[right].exp().mean())
        for name, idx in self.accuracies.items():
            out[name] = 100.0 * float(token_acc[idx].mean())
        return out


def plan_case(case: EditCase, *, commonsense: bool = True) -> CasePlan:
    """All scoring pairs of one case; tasks the case has no data for are left out."""
    plan = CasePlan()

    def versus(metric: str, prompt: str, right: str, wrong: str) -> None:
        plan.compare(metric, plan.pair(prompt, right), plan.pair(prompt, wrong))

    for p in case.rewrite:
        versus("ES", p, case.o_edit, case.o_true)
    for p in case.paraphrase or ():
        versus("PS", p, case.o_edit, case.o_true)
    for probe in case.neighborhood or ():
        versus("NS", probe.prompt, probe.answer, case.o_edit)
    for probe in case.relation or ():
        versus("RS", probe.prompt, probe.answer, case.o_edit)
    for probe in case.distracting or ():
        versus("DNS", probe.prompt, probe.answer, case.o_edit)
    for probe in case.reasoning or ():
        plan.accuracy("RES", plan.pair(probe.prompt, probe.answer))
    if commonsense and case.commonsense is not None:
        cs = case.commonsense
        versus("OS", cs.prompt, cs.right, cs.wrong)
        versus("DOS", f"{case.edit_sentence} {cs.prompt}", cs.right, cs.wrong)
    return plan


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean; 0 if any value is 0, NaN if any is missing (NaN)."""
    vals = np.asarray(values, dtype=float)
    if np.isnan(vals).any():
        return float("nan")
    if (vals <= 0).any():
        return 0.0
    return float(len(vals) / np.sum(1.0 / vals))


def mean_ci95(values: Iterable[float]) -> tuple[float, float, float]:
    """Mean and a 95% Student-t confidence interval ``(mean, low, high)``; NaN if empty."""
    vals = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if vals.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(vals.mean())
    sem = float(stats.sem(vals)) if vals.size > 1 else 0.0
    if not sem > 0:  # one value, or all equal
        return (m, m, m)
    lo, hi = stats.t.interval(0.95, vals.size - 1, loc=m, scale=sem)
    return (m, float(lo), float(hi))


def n_gram_entropy(texts: Sequence[str], ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """Fluency: the weighted mean over n of the entropy (bits) of each text's n-gram
    frequency distribution, averaged over texts. Repetitive text scores low."""
    per_text = []
    for text in texts:
        words = text.split()
        ent = []
        for n in ns:
            grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
            total = sum(grams.values())
            if total == 0:
                ent.append(0.0)
                continue
            freqs = np.array(list(grams.values()), dtype=float) / total
            ent.append(float(-(freqs * np.log2(freqs)).sum()))
        per_text.append(float(np.average(ent, weights=weights)))
    return float(np.mean(per_text)) if per_text else math.nan


def summarise(case_metrics: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of every metric over the cases that have it, its 95% CI (``NAME_ci``) and its count
    (``NAME_n``), plus Avg S."""
    names = sorted({k for m in case_metrics for k in m})
    out: dict[str, float] = {}
    for name in names:
        vals = [m[name] for m in case_metrics if name in m]
        mean, lo, hi = mean_ci95(vals)
        out[name] = mean
        out[f"{name}_ci"] = [lo, hi]  # type: ignore[assignment]
        out[f"{name}_n"] = len(vals)
    if all(k in out for k in AVG_OF):
        out["AvgS"] = harmonic_mean([out[k] for k in AVG_OF])
    return out
