"""Fig. 6 of the main paper from the validation grid's results: SADR on the drifting heads only
(selective, the default) against SADR on every head, across γ, at ROME's 20 steps; every point a
finished run under results/validation (``scripts/validation_grid.sh``).

    python analyses/fig6.py                                  # the table, from what has finished
    python analyses/fig6.py --figure figures/readme/fig6_heads --update docs/results.md

Both lines start from ROME alone at 20 steps (γ = 0). The paper's claim: restraining only the heads
that drift keeps efficacy (ES) where restraining all heads loses it, at similar specificity (RS,
DNS).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "analyses"))

from tables import Point, _fmt, figure_main, load_points  # noqa: E402, F401  (load_points: for callers)

MARKER = "<!-- fig6.py: heads -->"
END_MARKER = "<!-- /fig6.py: heads -->"
SHOWN = ("ES", "PS", "RS", "DNS", "EM", "RM", "DNM")
STEPS = 20


def lines(points: list[Point]) -> dict[str, list[tuple[float, Point]]]:
    """``{"selective": [(γ, point)], "all": [...]}`` at :data:`STEPS` steps, each from ROME alone."""
    out: dict[str, list[tuple[float, Point]]] = {"selective": [], "all": []}
    alone = next((p for p in points if p.is_reference), None)
    for p in points:
        c = p.config
        if c.get("editor") != "rome" or not c.get("sadr") or c.get("hp") or p.steps != STEPS:
            continue
        out[c.get("sadr_heads") or "selective"].append((float(c["sadr"]), p))
    for row in out.values():
        if alone is not None and row:
            row.append((0.0, alone))
        row.sort(key=lambda t: t[0])
    return {k: v for k, v in out.items() if v}


def table(points: list[Point]) -> str:
    head = ["heads", "γ", "n", *SHOWN]
    rows = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for heads, row in lines(points).items():
        for gamma, p in row:
            s = p.summary
            n = f"{len(p.cases)}" + ("" if p.finished else f" of {p.expected} (running)")
            rows.append(
                "| " + " | ".join([heads, f"{gamma:g}", n, *(_fmt(s.get(m, math.nan)) for m in SHOWN)]) + " |"
            )
    return "\n".join(rows)


def figure(points: list[Point]):
    """ES, RS and DNS against γ, one line per choice of heads (finished points only)."""
    from drift import plots

    done = {heads: {g: p for g, p in row if p.finished} for heads, row in lines(points).items()}
    xs = sorted({g for row in done.values() for g in row})
    series = {
        f"{m}, {heads} heads": [row[g].summary.get(m, math.nan) if g in row else math.nan for g in xs]
        for heads, row in done.items()
        for m in ("ES", "RS", "DNS")
    }
    return plots.curves(
        xs, series, x_title="SADR's γ", y_title="score (%)", title="SADR on the drifting heads vs every head"
    )


def main(argv: list[str] | None = None) -> int:
    return figure_main(argv, "fig6", __doc__, table, figure, MARKER, END_MARKER, width=None)


if __name__ == "__main__":
    sys.exit(main())
