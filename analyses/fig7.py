"""Fig. 7 of the main paper from the validation grid's results: edit success against specificity for
SADR's γ and for ROME's own knobs (steps, learning rate, ω), every point a finished run under
results/validation (``scripts/validation_grid.sh``).

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

MARKER = "<!-- fig7.py: trade-off -->"
END_MARKER = "<!-- /fig7.py: trade-off -->"
SPEC = ("RM", "DNM")


def _presets() -> dict[str, float]:
    from drift.editors.rome import ROMEHParams

    hp = ROMEHParams()
    return {"lr": float(hp.lr), "kl_factor": float(hp.kl_factor)}


def knob(p: Point) -> tuple[str, float] | None:
    """The line ``p`` lies on and its setting on it, or ``None`` (another editor, all heads, two
    knobs at once). ROME alone at its preset lies on several lines; this gives its steps line."""
    c = p.config
    hp = c.get("hp") or {}
    if c.get("editor") != "rome" or c.get("sadr_heads", "selective") != "selective":
        return None
    if c.get("sadr"):
        return (f"SADR γ, {p.steps} steps", float(c["sadr"])) if not hp else None
    if not hp:
        return "ROME steps", float(p.steps)
    if len(hp) == 1 and "steps" not in c:
        ((name, value),) = hp.items()
        label = {"lr": "ROME lr", "kl_factor": "ROME ω"}.get(name)
        return (label, float(value)) if label else None
    return None


def lines(points: list[Point]) -> dict[str, list[tuple[float, Point]]]:
    """Every knob's points in the order of its setting, ROME alone's where the line starts."""
    out: dict[str, list[tuple[float, Point]]] = {}
    alone = {p.steps: p for p in points if knob(p) and knob(p)[0] == "ROME steps"}
    preset = next((p for p in points if p.is_reference), None)
    for p in points:
        k = knob(p)
        if k is not None:
            out.setdefault(k[0], []).append((k[1], p))
    for name, row in out.items():
        if name.startswith("SADR") and (base := alone.get(row[0][1].steps)) is not None:
            row.append((0.0, base))  # γ = 0: ROME alone at the same steps
        elif name in ("ROME lr", "ROME ω") and preset is not None:
            row.append((_presets()["lr" if name == "ROME lr" else "kl_factor"], preset))
        row.sort(key=lambda t: t[0])
    return dict(sorted(out.items(), key=lambda kv: (not kv[0].startswith("SADR"), kv[0])))


def success(s: dict) -> float:
    vals = [s[m] for m in ("EM", "PM") if m in s]
    return sum(vals) / len(vals) if vals else math.nan


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
    """The two panels of Fig. 7 (RM, DNM against edit success) over finished points only."""
    from drift import plots

    panels: dict[str, dict] = {m: {} for m in SPEC}
    for name, row in lines(points).items():
        done = [(v, p) for v, p in row if p.finished]
        if len(done) < 2:
            continue
        for m in SPEC:
            panels[m][name] = (
                [p.summary.get(m, math.nan) for _, p in done],
                [success(p.summary) for _, p in done],
                [f"{v:g}" for v, _ in done],
            )
    n = max((len(p.cases) for p in points if p.finished), default=0)
    return plots.paths(
        panels,
        x_titles={
            "RM": "RM: relation prompts, P(right answer) margin (%)",
            "DNM": "DNM: distracting neighbourhood (%)",
        },
        y_title="edit success: mean of EM and PM (%)",
        title=f"SADR's γ against ROME's own knobs ({n} validation cases a point)",
    )


def main(argv: list[str] | None = None) -> int:
    return figure_main(argv, "fig7", __doc__, table, figure, MARKER, END_MARKER, width=1200)


if __name__ == "__main__":
    sys.exit(main())
