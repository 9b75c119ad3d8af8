"""What the commands print and claim: the summary table of a run, and ``--out`` checked before a run
writes it (:func:`drift.cli.runs.claim_out`, with its note).

Example:
    >>> print(summary_table({"ES": 100.0, "ES_ci": [90.0, 110.0], "ES_n": 12, "NS": 50.0,
    ...                      "NS_ci": [-267.7, 367.7], "NS_n": 2}))
                ES           NS
      100.00 ±10.0  50.00 (n=2)
    intervals are given from 5 cases on
"""

from __future__ import annotations

import sys

TABLE_ORDER = (
    "ES", "EM", "PS", "PM", "NS", "NM", "RS", "RM", "DNS", "DNM",
    "AvgS", "RES", "SAS", "OS", "DOS", "FL", "RefS", "PPL",
)  # fmt: skip
MIN_CASES_FOR_CI = 5  # below it a 95% interval over cases says little (t with 1 d.f. is ±12.7 s.e.)


def summary_table(summary: dict) -> str:
    """A run's summary as two aligned rows (metric names, then mean ± 95% half-width), columns two
    spaces apart; a metric over fewer than :data:`MIN_CASES_FOR_CI` cases shows its count instead
    of an interval, and a line says so."""
    from drift.evaluation.metrics import summary_stats

    typed = summary_stats(summary)
    heads, cells, few = [], [], False
    for name in TABLE_ORDER:
        if name not in typed:
            continue
        s = typed[name]
        if 0 < s.n < MIN_CASES_FOR_CI:
            cell, few = f"{s.mean:.2f} (n={s.n})", True
        else:
            hw = s.half_width
            cell = f"{s.mean:.2f}" + (f" ±{hw:.1f}" if hw == hw else "")
        heads.append(name)
        cells.append(cell)
    widths = [max(len(h), len(c)) for h, c in zip(heads, cells)]
    lines = [
        "  ".join(f"{h:>{w}}" for h, w in zip(heads, widths)),
        "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)),
    ]
    if few:
        lines.append(f"intervals are given from {MIN_CASES_FOR_CI} cases on")
    return "\n".join("  " + line if i < 2 else line for i, line in enumerate(lines))


def claim(out: str, config: dict, restart: bool, case_ids=None) -> None:
    """Refuse (or, with ``--restart``, set aside) an ``--out`` holding another configuration's
    results or cases of this one that ``case_ids`` lacks, saying where the earlier file went."""
    from drift.cli.runs import claim_out

    aside = claim_out(out, config, restart=restart, case_ids=case_ids)
    if aside is not None:
        print(f"--restart: the earlier {out} is kept as {aside}", file=sys.stderr)
