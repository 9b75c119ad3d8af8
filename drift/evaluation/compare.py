"""Comparing finished evaluation runs: one table, and paired differences against a reference run.

Each run is the JSON that ``python -m drift eval`` (or ``merge``) writes: ``{"config", "summary",
"cases"}``. Runs on the same cases can be compared case by case: for every metric, the per-case
difference to the reference run (the first), its mean, a paired t-test (scipy) and how many cases
got better or worse. That is the right test for "did SADR help ROME" — both runs edit the same
cases, so the case-to-case spread cancels.

Example:
    >>> ref = {"config": {"editor": "rome"}, "cases": [
    ...     {"case_id": i, "metrics": {"ES": 100.0, "RS": float(i % 2) * 100}} for i in range(6)]}
    >>> new = {"config": {"editor": "rome", "sadr": 1e-2}, "cases": [
    ...     {"case_id": i, "metrics": {"ES": 100.0, "RS": 100.0}} for i in range(6)]}
    >>> d = paired_difference(ref["cases"], new["cases"], "RS")
    >>> d.n, d.mean, d.better, d.worse
    (6, 50.0, 3, 0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scipy import stats

from drift.evaluation.metrics import scoring_of, summarise, summary_stats

DEFAULT_METRICS = ("ES", "PS", "NS", "RS", "DNS", "AvgS")
NUMBER = (int, float)
# the configuration entries that tables and labels read, each with its kind (``null``: unset)
CONFIG_KINDS: dict[str, type | tuple[type, ...]] = {
    **dict.fromkeys(("editor", "model", "data", "scoring", "pool", "sadr_heads", "dtype"), str),
    **dict.fromkeys(("data_sha256", "shard"), str),
    **dict.fromkeys(("sadr", "dr"), NUMBER),
    **dict.fromkeys(("steps", "seed", "limit"), int),
    "hp": dict,
}


def check_results(config, cases, where: str) -> None:
    """Refuse a results file (or log) whose parts are not what drift writes, as a hand edit can
    leave it: a ``ValueError`` starting with ``where`` (the command and the file) and naming the
    field — ``config`` not an object or one of :data:`CONFIG_KINDS` of another kind, ``cases``
    not a list, a row without a ``case_id`` or a ``metrics`` object, a metric neither a number
    nor ``null``.

    >>> check_results({"editor": "rome"}, [{"case_id": "7", "metrics": {"ES": "high"}}], "compare: r.json")
    Traceback (most recent call last):
    ...
    ValueError: compare: r.json: cases[0] (case '7'): metrics.ES must be a number or null, got 'high'
    """
    if not isinstance(config, dict):
        raise ValueError(f"{where}: 'config' must be an object, got {_brief(config)}")
    for key, kind in CONFIG_KINDS.items():
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise ValueError(f"{where}: config.{key} must be {_kind_name(kind)} or null, got {_brief(value)}")
    if not isinstance(cases, list):
        raise ValueError(f"{where}: 'cases' must be a list of case rows, got {_brief(cases)}")
    for i, row in enumerate(cases):
        if not isinstance(row, dict):
            raise ValueError(
                f"{where}: cases[{i}] must be an object with case_id and metrics, got {_brief(row)}"
            )
        case_id = row.get("case_id")
        if isinstance(case_id, bool) or not isinstance(case_id, (str, int)):
            raise ValueError(
                f"{where}: cases[{i}].case_id must be a string or a whole number, got {_brief(case_id)}"
            )
        at = f"{where}: cases[{i}] (case {case_id!r})"
        metrics = row.get("metrics")
        if not isinstance(metrics, dict):
            raise ValueError(f"{at}: 'metrics' must be an object of metric values, got {_brief(metrics)}")
        for name, value in metrics.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, NUMBER)):
                raise ValueError(f"{at}: metrics.{name} must be a number or null, got {_brief(value)}")


def _kind_name(kind) -> str:
    return {str: "a string", int: "a whole number", dict: "an object", NUMBER: "a number"}[kind]


def _brief(value) -> str:
    """A value as an error message shows it: its ``repr``, cut to 60 characters (missing: absent)."""
    text = "nothing (the field is missing)" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Paired:
    """Per-case differences ``other − reference`` of one metric over the cases both runs have."""

    metric: str
    n: int
    mean: float
    p: float  # two-sided paired t-test; nan when it is undefined (n < 2 or no spread)
    better: int
    worse: int


def paired_difference(reference: Sequence[dict], other: Sequence[dict], metric: str) -> Paired:
    """Compare two runs' case rows (``{"case_id", "metrics"}``) on ``metric``, matched by case id."""

    def value(row) -> float | None:  # missing: absent, NaN, or null as strict JSON holds NaN
        v = row["metrics"].get(metric)
        return None if v is None or not math.isfinite(v) else v

    ref = {r["case_id"]: value(r) for r in reference if value(r) is not None}
    pairs = [(ref[r["case_id"]], value(r)) for r in other if r["case_id"] in ref and value(r) is not None]
    diffs = [b - a for a, b in pairs]
    if not diffs:
        return Paired(metric, 0, math.nan, math.nan, 0, 0)
    p = math.nan
    if len(diffs) > 1 and any(d != diffs[0] for d in diffs):
        p = float(stats.ttest_rel([b for _, b in pairs], [a for a, _ in pairs]).pvalue)
    return Paired(
        metric, len(diffs), sum(diffs) / len(diffs), p, sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    )


def _cell(summary: dict, metric: str) -> str:
    stat = summary_stats(summary).get(metric)
    if stat is None:
        return "—"
    n = f" (n={stat.n})" if f"{metric}_n" in summary else ""
    if math.isnan(stat.half_width):
        return f"{stat.mean:.1f}{n}"
    return f"{stat.mean:.1f} ± {stat.half_width:.1f}{n}"


def compare_table(runs: Sequence[tuple[str, dict]], metrics: Sequence[str] = DEFAULT_METRICS) -> str:
    """A Markdown table of ``(label, run)`` pairs (mean ± 95% CI half-width and each run's count
    of cases), then the paired differences of every later run against the first.
    Runs scored or pooled differently (their configs' ``scoring`` / ``pool``) are refused; runs of
    different case files (their configs' ``data_sha256``) are compared under a warning."""
    if not runs:
        raise ValueError("compare: no runs given")
    ways = [scoring_of(run.get("config") or {}) for _, run in runs]
    if any(w != ways[0] for w in ways[1:]):
        raise ValueError(
            "compare: the runs are scored differently (scoring, pool): "
            + "; ".join(f"{label}: {w}" for (label, _), w in zip(runs, ways))
            + " — re-run them with the same --scoring and --pool"
        )
    summaries = [summarise([c["metrics"] for c in run["cases"]], ways[0][1]) for _, run in runs]
    unknown = [m for m in metrics if not any(m in s for s in summaries)]
    if unknown:
        known = sorted({k for s in summaries for k in s if not k.endswith(("_ci", "_n", "_k"))})
        raise ValueError(f"compare: no run has the metric(s) {unknown}; they have {known}")
    lines = ["| run | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for (label, _), summary in zip(runs, summaries):
        lines.append(f"| {label} | " + " | ".join(_cell(summary, m) for m in metrics) + " |")
    if len(runs) > 1:
        ref_label, ref = runs[0]
        digests = {label: (run.get("config") or {}).get("data_sha256") for label, run in runs}
        if len({d for d in digests.values() if d is not None}) > 1:
            lines += [
                "",
                "**Warning: the runs read different case files** (data_sha256: "
                + ", ".join(f"{label} {d}" for label, d in digests.items())
                + "); cases with the same id may not be the same edit, so the paired differences "
                "below compare different things.",
            ]
        lines += [
            "",
            f"Paired over the same cases, each run minus {ref_label} (t-test p; cases better / worse):",
            "",
        ]
        per_case = [m for m in metrics if m != "AvgS"]  # Avg S is a summary, not a per-case metric
        lines.append("| run | " + " | ".join(per_case) + " |")
        lines.append("|---" * (len(per_case) + 1) + "|")
        for label, run in runs[1:]:
            cells = []
            for m in per_case:
                d = paired_difference(ref["cases"], run["cases"], m)
                p = "p n/a" if math.isnan(d.p) else f"p={d.p:.2g}"  # n/a: fewer than 2 cases or no spread
                cells.append("—" if d.n == 0 else f"{d.mean:+.1f} ({p}; {d.better}/{d.worse})")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
