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

Scoring (``scoring=``), as the papers' evaluation code does by default: a multi-token target is
scored by its **mean** log-probability per token (``"mean"``), so a longer answer is not
penalised for its length; the magnitude is then exp(mean log-prob), the per-token geometric-mean
probability. ``"product"`` scores the whole continuation's probability (the product of its
tokens'), drift's earlier form. OS and DOS are always compared per token. RES is the
teacher-forced token accuracy of the reasoning answer (the target is a chain's end, with no
competing object).

Summaries (``pool=``): all scores are percentages. With ``"prompts"`` (the reference's default)
every prompt of every case counts once — a case with ten neighbourhood prompts weighs ten times
one with one — and the 95% interval is the t-interval of that ratio estimate with cases as
clusters (prompts of one case are not independent). With ``"cases"`` each case's mean over its
prompts counts once. Each case's metrics carry ``NAME_k``, its number of prompts, so either
summary can be taken from stored results. Avg S is the harmonic mean of ES, PS, NS, RS and DNS.
FL is the weighted bi-/tri-gram entropy of generated text.

Example:
    >>> plan = CasePlan()
    >>> i = plan.pair("The Eiffel Tower is in", "Rome"); j = plan.pair("The Eiffel Tower is in", "Paris")
    >>> plan.compare("ES", i, j)
    >>> import torch
    >>> plan.metrics(torch.tensor([-0.1, -3.0]), torch.tensor([1.0, 1.0]), torch.tensor([1, 1]))["ES"]
    100.0
    >>> summarise([{"ES": 100.0, "ES_k": 1}, {"ES": 50.0, "ES_k": 3}])["ES"]   # 1 + 1.5 of 4 prompts
    62.5
    >>> summarise([{"ES": 100.0, "ES_k": 1}, {"ES": 50.0, "ES_k": 3}], pool="cases")["ES"]
    75.0
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
NORMALISED = {"OS", "DOS"}  # compared by mean log-prob per token whatever the scoring
SCORINGS = ("mean", "product")
POOLS = ("prompts", "cases")
DEFAULT_SCORING, DEFAULT_POOL = "mean", "prompts"


def scoring_of(config: dict) -> tuple[str, str]:
    """``(scoring, pool)`` of a results file's config; files written before these options
    existed were scored by ``"product"`` and summarised over ``"cases"``."""
    return config.get("scoring", "product"), config.get("pool", "cases")


def check_scoring(scoring: str, pool: str | None = None) -> None:
    """A ValueError naming the bad option and the choices."""
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    if pool is not None and pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")


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

    def metrics(
        self, logprob: Tensor, token_acc: Tensor, n_tokens: Tensor, scoring: str = DEFAULT_SCORING
    ) -> dict[str, float]:
        """Percent scores from the pairs' ``logprob [n]`` (of the whole target), ``token_acc [n]``
        and ``n_tokens [n]``, with each score's prompt count ``NAME_k``."""
        check_scoring(scoring)
        per_token = logprob / n_tokens
        out: dict[str, float] = {}
        for name, cmp in self.comparisons.items():
            right = [r for r, _ in cmp]
            wrong = [w for _, w in cmp]
            lp = per_token if (scoring == "mean" or name in NORMALISED) else logprob
            out[name] = 100.0 * float((lp[right] > lp[wrong]).float().mean())
            out[f"{name}_k"] = len(cmp)
            if name in SCORE_MAGNITUDE:
                mag = per_token if scoring == "mean" else logprob
                out[SCORE_MAGNITUDE[name]] = 100.0 * float(mag[right].exp().mean())
                out[f"{SCORE_MAGNITUDE[name]}_k"] = len(cmp)
        for name, idx in self.accuracies.items():
            out[name] = 100.0 * float(token_acc[idx].mean())
            out[f"{name}_k"] = len(idx)
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


def n_gram_entropy(
    texts: Sequence[str], ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)
) -> float:
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


def pooled_ci95(means: Sequence[float], counts: Sequence[float]) -> tuple[float, float, float]:
    """The mean over all prompts of cases with per-case ``means`` over ``counts`` prompts, and
    its 95% interval ``(mean, low, high)``: R = Σkᵢmᵢ / Σkᵢ, with the linearised variance of a
    ratio estimate over n cases, n/(n−1) · Σ kᵢ²(mᵢ − R)² / (Σkᵢ)², and Student t with n−1
    degrees of freedom. NaN if empty."""
    m = np.asarray(means, dtype=float)
    k = np.asarray(counts, dtype=float)
    keep = ~np.isnan(m) & (k > 0)
    m, k = m[keep], k[keep]
    if m.size == 0:
        return (math.nan, math.nan, math.nan)
    r = float((k * m).sum() / k.sum())
    if m.size == 1:
        return (r, r, r)
    se = math.sqrt(m.size / (m.size - 1) * float((k**2 * (m - r) ** 2).sum())) / float(k.sum())
    if not se > 0:
        return (r, r, r)
    lo, hi = stats.t.interval(0.95, m.size - 1, loc=r, scale=se)
    return (r, float(lo), float(hi))


def summarise(case_metrics: Sequence[dict[str, float]], pool: str = DEFAULT_POOL) -> dict[str, float]:
    """Every metric over the cases that have it (see the module docstring for ``pool``), its 95%
    CI (``NAME_ci``), its count of cases (``NAME_n``) and of prompts (``NAME_k``, pooled
    metrics only), plus Avg S. A metric without prompt counts (FL, PPL, or results written
    before counts were kept) is a mean over cases either way."""
    check_scoring(DEFAULT_SCORING, pool)
    names = sorted({k for m in case_metrics for k in m if not k.endswith("_k")})
    out: dict[str, float] = {}
    for name in names:
        rows = [m for m in case_metrics if name in m]
        vals = [m[name] for m in rows]
        counted = all(f"{name}_k" in m for m in rows)
        if pool == "prompts" and counted:
            mean, lo, hi = pooled_ci95(vals, [m[f"{name}_k"] for m in rows])
            out[f"{name}_k"] = int(sum(m[f"{name}_k"] for m in rows))
        else:
            mean, lo, hi = mean_ci95(vals)
        out[name] = mean
        out[f"{name}_ci"] = [lo, hi]  # type: ignore[assignment]
        out[f"{name}_n"] = len(vals)
    if all(k in out for k in AVG_OF):
        out["AvgS"] = harmonic_mean([out[k] for k in AVG_OF])
    return out
