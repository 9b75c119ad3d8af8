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
SAS / SAM    the subject named by an alias             its answer     o_true
RES / REM    multi-hop prompts in the edited world     chain's end    o_true
OS / DOS     commonsense item (plain / ⊕ edit)         right choice   wrong one
===========  ========================================  =============  ==========

Scoring (``scoring=``), as the papers' evaluation code does by default: a multi-token target is
scored by its **mean** log-probability per token (``"mean"``), so a longer answer is not
penalised for its length; the magnitude is then exp(mean log-prob), the per-token geometric-mean
probability. ``"product"`` scores the whole continuation's probability (the product of its
tokens'). OS and DOS are always compared per token. RES compares each
reasoning prompt's answer with o_true, as the reference does (``res="reference"``);
``res="accuracy"`` scores instead the teacher-forced token accuracy of the answer.

Summaries (``pool=``): all scores are percentages. With ``"prompts"`` (the reference's default)
every prompt of every case counts once — a case with ten neighbourhood prompts weighs ten times
one with one — and the 95% interval is the t-interval of that ratio estimate with cases as
clusters (prompts of one case are not independent). With ``"cases"`` each case's mean over its
prompts counts once. Each case's metrics carry ``NAME_k``, its number of prompts, so either
summary can be taken from stored results. Avg S is the harmonic mean of ES, PS, NS, RS and DNS.

Generated text (``FLUENCY_FORMS``): FL is the weighted bi-/tri-gram entropy of the texts
generated from a case's generation prompts, RefS (consistency) the TF-IDF cosine similarity of
those texts with reference texts about o_edit (:func:`tfidf_similarity`). The reference form
generates from every prompt to 100 tokens in all and counts n-grams of Treebank words
(:mod:`drift.evaluation.words`); ``"short"`` generates 40 new tokens from 2 prompts and splits words at
whitespace.

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
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from scipy import stats
from torch import Tensor

from drift.data import EditCase
from drift.model.scoring import SCORINGS

SCORE_MAGNITUDE = {
    "ES": "EM",
    "PS": "PM",
    "NS": "NM",
    "RS": "RM",
    "DNS": "DNM",
    "SAS": "SAM",
    "RES": "REM",
}
AVG_OF = ("ES", "PS", "NS", "RS", "DNS")
NORMALISED = {"OS", "DOS"}  # compared by mean log-prob per token whatever the scoring
POOLS = ("prompts", "cases")
DEFAULT_SCORING, DEFAULT_POOL = "mean", "prompts"
RES_FORMS = ("reference", "accuracy")  # reasoning answer vs o_true; its token accuracy
PPL_FORMS = ("reference", "per-text")  # texts joined and cut to 100 tokens; the mean over texts


@dataclass(frozen=True)
class FluencyForm:
    """How FL's texts are generated and split into words: from the first ``prompts`` generation
    prompts (``None``: all), each continued by ``new_tokens`` tokens or, with ``length``, up to
    that many tokens in all (prompt included); ``words``: ``"treebank"`` (:mod:`drift.evaluation.words`) or
    ``"whitespace"``; ``clean``: the reference's text cleaning (:func:`clean_generation`)."""

    prompts: int | None
    new_tokens: int | None
    length: int | None
    words: str
    clean: bool


FLUENCY_FORMS = {
    # every prompt, 100 tokens in all (the reference's max_out_len counts the prompt), Treebank words
    "reference": FluencyForm(prompts=None, new_tokens=None, length=100, words="treebank", clean=True),
    "short": FluencyForm(prompts=2, new_tokens=40, length=None, words="whitespace", clean=False),
}


def check_forms(fluency: str | None = None, ppl: str | None = None, res: str | None = None) -> None:
    """A ValueError naming a bad metric form and the choices."""
    for name, value, choices in (
        ("fluency", fluency, tuple(FLUENCY_FORMS)),
        ("ppl_form", ppl, PPL_FORMS),
        ("res", res, RES_FORMS),
    ):
        if value is not None and value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")


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


def plan_case(case: EditCase, *, commonsense: bool = True, res: str = "reference") -> CasePlan:
    """All scoring pairs of one case; tasks the case has no data for are left out. ``res``:
    ``"reference"`` scores each reasoning answer against o_true, ``"accuracy"`` its teacher-forced
    token accuracy (see the module docstring)."""
    check_forms(res=res)
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
    for probe in case.subject_alias or ():
        versus("SAS", probe.prompt, probe.answer, case.o_true)
    for probe in case.reasoning or ():
        if res == "reference":
            versus("RES", probe.prompt, probe.answer, case.o_true)
        else:
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
    texts: Sequence[str],
    ns: Sequence[int] = (2, 3),
    weights: Sequence[float] = (2 / 3, 4 / 3),
    *,
    words: str = "treebank",
) -> float:
    """Fluency: the weighted mean over n of the entropy (bits) of each text's n-gram
    frequency distribution, averaged over texts. Repetitive text scores low. ``words``: how a
    text is split into words, ``"treebank"`` (the reference's ``nltk.word_tokenize``,
    :func:`drift.evaluation.words.word_tokenize`) or ``"whitespace"`` (split at whitespace). A text too
    short for any n-gram counts 0 for that n."""
    from drift.evaluation.words import word_tokenize

    if words not in ("treebank", "whitespace"):
        raise ValueError(f"words must be 'treebank' or 'whitespace', got {words!r}")
    split = word_tokenize if words == "treebank" else str.split
    per_text = []
    for text in texts:
        tokens = split(text)
        ent = []
        for n in ns:
            grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
            total = sum(grams.values())
            if total == 0:
                ent.append(0.0)
                continue
            freqs = np.array(list(grams.values()), dtype=float) / total
            ent.append(float(-(freqs * np.log2(freqs)).sum()))
        per_text.append(float(np.average(ent, weights=weights)))
    return float(np.mean(per_text)) if per_text else math.nan


def clean_generation(text: str, special: Sequence[str] = ()) -> str:
    """A generated text as the reference evaluates it: Unicode NFKD, each blank line (``"\\n\\n"``)
    a space, and the tokenizer's special-token strings ``special`` removed (the reference
    removes GPT-J's ``<|endoftext|>``)."""
    text = unicodedata.normalize("NFKD", text).replace("\n\n", " ")
    for tok in special:
        if tok:
            text = text.replace(tok, "")
    return text


# ---- consistency (RefS): TF-IDF similarity with reference texts about o_edit --------------------
@dataclass(frozen=True)
class TfidfStats:
    """Inverse document frequencies ``idf [vocab]`` of the words ``vocab`` (word -> column), applied
    by scikit-learn's ``TfidfVectorizer`` as the reference applies its statistics: words of two or
    more word characters, lower-cased."""

    idf: np.ndarray
    vocab: dict[str, int]

    @classmethod
    def fit(cls, documents: Sequence[str]) -> "TfidfStats":
        """Smoothed IDF over ``documents``: idf(w) = ln((1 + n) / (1 + df(w))) + 1, n documents,
        df(w) those holding w (scikit-learn's ``TfidfVectorizer`` defaults, which the reference's
        statistics were fitted with). Documents without a word give no vocabulary."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        docs = list(documents)
        vec = TfidfVectorizer()
        if not any(vec.build_analyzer()(d) for d in docs):
            return cls(np.zeros(0), {})
        vec.fit(docs)
        return cls(np.asarray(vec.idf_, float), {w: int(j) for w, j in vec.vocabulary_.items()})

    @cached_property
    def _vectorizer(self):
        """A ``TfidfVectorizer`` holding these statistics, unnormalised (count x IDF)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(vocabulary=self.vocab, norm=None)
        vec.idf_ = np.asarray(self.idf, float)
        return vec

    def vector(self, text: str) -> np.ndarray:
        """Term counts of ``text``'s known words times their IDF (a word outside ``vocab`` is
        dropped)."""
        if not self.vocab:
            return np.zeros(0)
        return self._vectorizer.transform([text]).toarray()[0]


def tfidf_similarity(text_a: str, text_b: str, stats_: TfidfStats) -> float:
    """Cosine similarity of the two texts' TF-IDF vectors; NaN when either has no known word."""
    a, b = stats_.vector(text_a), stats_.vector(text_b)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return math.nan
    return float(a @ b / (na * nb))


def consistency(generations: Sequence[str], references: Sequence[str], stats_: TfidfStats) -> float:
    """RefS: the TF-IDF cosine similarity of all ``generations`` joined by spaces with all
    ``references`` (texts about o_edit) joined by spaces, as the reference computes it."""
    return tfidf_similarity(" ".join(generations), " ".join(references), stats_)


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


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def summarise(case_metrics: Sequence[dict[str, float]], pool: str = DEFAULT_POOL) -> dict[str, float]:
    """Every metric over the cases that have it (see the module docstring for ``pool``), its 95%
    CI (``NAME_ci``), its count of cases (``NAME_n``) and of prompts (``NAME_k``, pooled
    metrics only), plus Avg S. A metric without prompt counts (FL, PPL, or results written
    before counts were kept) is a mean over cases either way. A case whose value is missing (NaN,
    or ``None`` as a results file read back holds it) is left out of the mean and of ``NAME_n``.

    >>> s = summarise([{"PPL": 20.0}, {"PPL": float("nan")}, {"PPL": None}, {"PPL": 30.0}])
    >>> s["PPL"], s["PPL_n"]
    (25.0, 2)
    """
    check_scoring(DEFAULT_SCORING, pool)
    names = sorted({k for m in case_metrics for k in m if not k.endswith("_k")})
    out: dict[str, float] = {}
    for name in names:
        # a missing value (NaN, or None as strict JSON reads it back) is no case of the metric
        rows = [m for m in case_metrics if name in m and _finite(m[name])]
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


@dataclass(frozen=True)
class ReferenceTexts:
    """Texts about objects for RefS, keyed by ``(relation_id, object id)``, and the TF-IDF
    statistics to compare generations with them."""

    texts: dict[tuple[str, str], tuple[str, ...]]
    stats: TfidfStats

    def about(self, case: EditCase) -> tuple[str, ...] | None:
        """The texts about the case's o_edit under its relation; ``None`` when the case has no ids
        or no text is known for them."""
        if case.relation_id is None or case.o_edit_id is None:
            return None
        return self.texts.get((case.relation_id, case.o_edit_id)) or None


def load_reference_texts(folder: str | Path) -> ReferenceTexts:
    """The reference's ``--snips_dir``: ``attribute_snippets.json`` (ROME's Wikipedia snippets, a
    list of ``{"relation_id", "target_id", "samples": [{"text": ...}]}``) and, beside it, the IDF
    statistics ``idf.npy`` + ``tfidf_vocab.json``; without those two, the IDF is fitted on the
    snippets themselves (what ROME's ``collect_stats`` does when it cannot download them). Nothing
    is downloaded; a ``ValueError`` names a missing or malformed file."""
    import json

    folder = Path(folder)
    snips = folder / "attribute_snippets.json"
    if not snips.is_file():
        raise ValueError(f"reference texts: {snips} does not exist (ROME's attribute_snippets.json)")
    try:
        raw = json.loads(snips.read_text(encoding="utf-8"))
        texts: dict[tuple[str, str], list[str]] = {}
        for el in raw:
            key = (str(el["relation_id"]), str(el["target_id"]))
            texts.setdefault(key, []).extend(str(s["text"]) for s in el["samples"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"reference texts: {snips} is not ROME's snippet format ({e!r})") from None
    idf_path, vocab_path = folder / "idf.npy", folder / "tfidf_vocab.json"
    if idf_path.is_file() and vocab_path.is_file():
        vocab = {str(k): int(v) for k, v in json.loads(vocab_path.read_text(encoding="utf-8")).items()}
        idf = np.asarray(np.load(idf_path), dtype=float)
        if idf.ndim != 1 or sorted(vocab.values()) != list(range(len(idf))):  # one column per word
            raise ValueError(f"reference texts: {idf_path} has {idf.shape} values for {len(vocab)} words")
        stats_ = TfidfStats(idf, vocab)
    else:
        stats_ = TfidfStats.fit([t for ts in texts.values() for t in ts])
    return ReferenceTexts({k: tuple(v) for k, v in texts.items()}, stats_)


@dataclass(frozen=True)
class Stat:
    """One metric of a summary: its mean, 95% CI, how many cases have it and how many prompts
    were pooled (``None`` for a per-case mean)."""

    mean: float
    ci: tuple[float, float]
    n: int
    k: int | None = None

    @property
    def half_width(self) -> float:
        lo, hi = self.ci
        return (hi - lo) / 2 if math.isfinite(lo) and math.isfinite(hi) else math.nan


def summary_stats(summary: dict) -> dict[str, Stat]:
    """The typed view of a summary written by :func:`drift.evaluation.metrics.summarise`.

    >>> s = summary_stats({"ES": 90.0, "ES_ci": [80.0, 100.0], "ES_n": 10, "AvgS": 50.0})
    >>> s["ES"].half_width, s["ES"].n, s["AvgS"].n
    (10.0, 10, 0)
    >>> summary_stats({"PPL": None, "PPL_ci": [None, None], "PPL_n": 0})["PPL"].mean
    nan
    """
    out = {}
    for name, value in summary.items():
        if name.endswith(("_ci", "_n", "_k")):
            continue
        # strict JSON holds a missing (NaN) mean or bound as null: read back as NaN
        lo, hi = (math.nan if x is None else x for x in summary.get(f"{name}_ci", (None, None)))
        mean = math.nan if value is None else float(value)
        out[name] = Stat(mean, (lo, hi), int(summary.get(f"{name}_n", 0)), summary.get(f"{name}_k"))
    return out
