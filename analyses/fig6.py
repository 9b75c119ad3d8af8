"""Fig. 6 of the main paper from the validation grid's results: SADR on the drifting heads only
(selective, the default) against SADR on every head, across γ, at ROME's 20 steps; every point a
finished run under results/validation (``sweeps/validation.toml``, run by ``scripts/validation_grid.sh``).

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

from drift.cli.commands.sadr import fig6, fig6_lines  # noqa: E402  (the one producer of Fig. 6)

MARKER = "<!-- fig6.py: heads -->"
END_MARKER = "<!-- /fig6.py: heads -->"
SHOWN = ("ES", "PS", "RS", "DNS", "EM", "RM", "DNM")
STEPS = 20


def lines(points: list[Point]) -> dict[str, list[tuple[float, Point]]]:
    """``{"selective": [(γ, point)], "all": [...]}`` at :data:`STEPS` steps, each from ROME alone
    (:func:`drift.cli.commands.sadr.fig6_lines`)."""
    return fig6_lines(points, "rome", STEPS)


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
    """Fig. 6 over the finished points, drawn by :func:`drift.cli.commands.sadr.fig6` (as
    ``python -m drift sadr`` draws it from its own runs)."""
    return fig6(points, "rome", STEPS)


def main(argv: list[str] | None = None) -> int:
    return figure_main(argv, "fig6", __doc__, table, figure, MARKER, END_MARKER, width=None)


if __name__ == "__main__":
    sys.exit(main())
