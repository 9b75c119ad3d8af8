"""Fig. 7 of the main paper from the validation grid's results: edit success against specificity for
SADR's γ and for ROME's own knobs (steps, learning rate, ω), every point a finished run under
results/validation (``sweeps/validation.toml``, run by ``scripts/validation_grid.sh``).

    python analyses/fig7.py                                  # the table, from what has finished
    python analyses/fig7.py --figure figures/readme/fig7_tradeoff --update docs/results.md

Edit success is the mean of EM and PM (the probability margins of the rewrite and paraphrase
prompts); specificity is RM (relation prompts, P of the right answer) and DNM (distracting
neighbourhood prompts). Each line goes through one knob's settings from ROME alone:

- "SADR γ, N steps": ROME alone at N steps (γ = 0), then ROME+SADR (selective heads) at each γ;
- "ROME steps": ROME alone at 20, 40, 80 steps (early stop on, as every ROME run);
- "ROME lr" and "ROME ω": ROME's preset and the runs with ``--hp lr=…`` or ``--hp kl_factor=…``.

A point is drawn when its run has finished every case of the split; the table also lists runs
still going, with their count. Does SADR buy more specificity per point of edit success than
ROME's own KL term (ω) or fewer steps? Read the lines' slopes.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "analyses"))

from tables import Point, _fmt, figure_main, load_points  # noqa: E402, F401  (load_points: for callers)

from drift.cli.commands.sadr import fig7, fig7_knob, fig7_lines, success  # noqa: E402  (Fig. 7's one producer)

MARKER = "<!-- fig7.py: trade-off -->"
END_MARKER = "<!-- /fig7.py: trade-off -->"
SPEC = ("RM", "DNM")  # the specificity metrics of the table


def knob(p: Point) -> tuple[str, float] | None:
    """The line ``p`` lies on and its setting on it, or ``None`` (another editor, all heads, two
    knobs at once) (:func:`drift.cli.commands.sadr.fig7_knob`)."""
    return fig7_knob(p, "rome")


def lines(points: list[Point]) -> dict[str, list[tuple[float, Point]]]:
    """Every knob's points in the order of its setting, ROME alone's where the line starts
    (:func:`drift.cli.commands.sadr.fig7_lines`)."""
    return fig7_lines(points, "rome")


def table(points: list[Point]) -> str:
    """The trade-off as Markdown, one row per (line, setting)."""
    head = ["line", "setting", "n", "success = mean(EM, PM)", "EM", "PM", "RM", "DNM"]
    rows = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, row in lines(points).items():
        for value, p in row:
            s = p.summary
            n = f"{len(p.cases)}" + ("" if p.finished else f" of {p.expected} (running)")
            cells = [
                name,
                f"{value:g}",
                n,
                _fmt(success(s)),
                *(_fmt(s.get(m, math.nan)) for m in ("EM", "PM", *SPEC)),
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def figure(points: list[Point]):
    """The two panels of Fig. 7 over finished points only, drawn by
    :func:`drift.cli.commands.sadr.fig7` (as ``python -m drift sadr`` draws it from its own runs)."""
    return fig7(points, "rome", split="validation")


def main(argv: list[str] | None = None) -> int:
    return figure_main(argv, "fig7", __doc__, table, figure, MARKER, END_MARKER)


if __name__ == "__main__":
    sys.exit(main())
