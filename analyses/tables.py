"""The tables of docs/results.md, re-rendered from the results files committed under results/.

    python analyses/tables.py                        # the validation grid's table (partial points too)
    python analyses/tables.py --paired               # and each point minus ROME, paired by case
    python analyses/tables.py --update docs/results.md   # rewrite the table between its markers
    python analyses/tables.py --widen                # the next point of the grid's upward widening
    python analyses/tables.py --chosen               # the rule's final choice, once the grid is done
    python analyses/tables.py --results results/test --test [--update docs/results.md]   # Table 3
    python analyses/tables.py --results results/sequential --sequential [--update docs/results.md]
    python analyses/tables.py --results results/audit --audit [--update docs/results.md]

The validation grid (``scripts/validation_grid.sh``) writes one ``python -m drift eval`` run per
point into ``results/validation``: ``NAME.json`` when the point is finished, its log
``NAME.json.partial.jsonl`` while it runs (the configuration in the header line, one line per
finished case). Both are read here (:func:`drift.cli.runs.read_any`) and summarised as ``eval`` does
(:func:`drift.evaluation.metrics.summarise`, pooled as the run's configuration says); a point still running
shows how many of the split's cases it has.

The selection rule of docs/results.md ("Protocol for a new model"), applied by :func:`select` to
finished points only: among the ROME+SADR points (selective heads) whose ES and PS are each at
most 2 points below ROME alone (the preset, 20 steps) on the same cases, the one with the highest
mean of NS, RS and DNS; a tie goes to fewer steps, then to the smaller γ.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drift.cli.runs import read_any  # noqa: E402
from drift.evaluation.metrics import scoring_of, summarise  # noqa: E402
from drift.util.store import save_text  # noqa: E402

GRID_STEPS = (20, 40, 80)  # the paper's grid (App. C.2)
GRID_GAMMAS = (5e-3, 1e-2, 4e-2, 8e-2)
TOLERANCE = 2.0  # ES and PS at most this many points below ROME alone
WIDEN_CAP = 1.28  # the upward widening stops here whatever the rule says
SHOWN = ("ES", "PS", "NS", "RS", "DNS")
SPECIFICITY = ("NS", "RS", "DNS")
MARKER = "<!-- tables.py: validation grid -->"
END_MARKER = "<!-- /tables.py: validation grid -->"
TEST_MARKER = "<!-- tables.py: test cases -->"
TEST_END_MARKER = "<!-- /tables.py: test cases -->"
TABLE3 = ("ES", "PS", "NS", "RS", "DNS", "AvgS", "EM", "PM", "RM", "DNM")
SEQ_MARKER = "<!-- tables.py: sequential -->"
SEQ_END_MARKER = "<!-- /tables.py: sequential -->"
SEQ_MARKS = (10, 25, 50, 100)  # the AdaPLE paper's points of the attenuation curve
PAPER_MARKER = "<!-- tables.py: paper -->"
PAPER_END_MARKER = "<!-- /tables.py: paper -->"
SEED_MARKER = "<!-- tables.py: seeds -->"
SEED_END_MARKER = "<!-- /tables.py: seeds -->"
RETENTION_MARKER = "<!-- tables.py: retention -->"
RETENTION_END_MARKER = "<!-- /tables.py: retention -->"
AUDIT_MARKER = "<!-- tables.py: audit -->"
AUDIT_END_MARKER = "<!-- /tables.py: audit -->"
AUDIT_SHARDS = tuple(range(34, 41))  # scripts/audit_runs.sh: --limit 1178 --shard 34/40 ... 40/40
PAPER_METRICS = ("ES", "PS", "NS", "RS", "DNS", "EM", "PM")
# The SADR paper's GPT-J-6B numbers (../shared/papers/000_*: Table 3 for ES, PS, RS and DNS, its
# Table 6 for NS, EM and PM, whose ROME row says PM 76.93 where Table 1 says 80.26), ROME then
# ROME+SADR (γ 1e-2, 80 steps) on its 1683 cases; Table 10: 500 sampled cases, ROME and γ 4e-2.
PAPER_GPTJ = {
    "ROME": {"ES": 99.88, "PS": 99.58, "NS": 80.26, "RS": 11.94, "DNS": 30.42, "EM": 99.39, "PM": 76.93},
    "ROME+SADR": {"ES": 99.76, "PS": 96.36, "NS": 80.86, "RS": 27.75, "DNS": 49.35, "EM": 99.26, "PM": 53.73},
}
PAPER_TABLE10 = {
    "ROME": {"ES": 100.00, "PS": 99.00, "NS": 78.83, "RS": 13.17, "DNS": 31.53},
    "ROME+SADR": {"ES": 99.80, "PS": 95.60, "NS": 79.75, "RS": 34.13, "DNS": 50.66},
}


class Point:
    """One run of the grid: its file, configuration, finished case rows and summary. (A plain
    class: a dataclass needs its module in ``sys.modules``, which a script loaded by path is not.)"""

    def __init__(
        self, name: str, path: Path, config: dict, cases: list[dict], finished: bool, expected: int | None
    ):
        self.name, self.path, self.config, self.cases = name, path, config, cases
        self.finished = finished  # a results file (every case of the split), not a log
        self.expected = expected  # the split's number of cases, when the case file is here

    @property
    def summary(self) -> dict:
        return summarise([c["metrics"] for c in self.cases], scoring_of(self.config)[1])

    @property
    def gamma(self) -> float | None:
        return self.config.get("sadr")

    @property
    def steps(self) -> int:
        return int(self.config.get("steps") or preset_steps(self.config.get("editor", "rome")))

    @property
    def editor(self) -> str:
        return str(self.config.get("editor", "rome"))

    @property
    def alone(self) -> bool:
        """The editor alone at its preset (a grid's reference: ROME's grid ROME, MEMIT's MEMIT):
        no SADR, no steps or other hyper-parameter given."""
        c = self.config
        return not c.get("sadr") and not c.get("steps") and not c.get("hp")

    @property
    def is_reference(self) -> bool:
        """ROME alone at its preset (Fig. 6 and 7 start their lines there)."""
        return self.alone and self.editor == "rome"

    @property
    def is_candidate(self) -> bool:
        """An editor+SADR point of the grid (selective heads, no other hyper-parameter)."""
        c = self.config
        return bool(c.get("sadr")) and c.get("sadr_heads", "selective") == "selective" and not c.get("hp")

    def specificity(self, summary: dict | None = None) -> float:
        s = self.summary if summary is None else summary
        vals = [s.get(m, math.nan) for m in SPECIFICITY]
        return sum(vals) / len(vals)


def preset_steps(editor: str) -> int:
    """The editor's own optimisation steps on the default model (ROME: 20)."""
    from drift.editors.rome import ROMEHParams

    return ROMEHParams().steps if editor in ("rome", "rome-awd") else 20


def split_size(config: dict) -> int | None:
    """How many cases the run's split holds (``--limit`` then ``--shard``), when its case file is
    here and unchanged; else ``None``."""
    from drift.cli.spec import digest_of
    from drift.data import load_cases
    from drift.util.runtime import share

    data = config.get("data")
    if not isinstance(data, str) or not (data == "builtin" or Path(data).is_file()):
        return None
    if config.get("data_sha256") and digest_of(data) != config["data_sha256"]:
        return None
    return len(share(load_cases(data, limit=config.get("limit")), config.get("shard")))


def load_points(folder: Path) -> list[Point]:
    """Every run in ``folder``: finished results files, and the logs of runs still going."""
    points: dict[str, Point] = {}
    sizes: dict[tuple, int | None] = {}
    files = sorted(folder.glob("*.json")) + sorted(folder.glob("*.json.partial.jsonl"))
    for path in files:
        name = path.name.removesuffix(".partial.jsonl").removesuffix(".json")
        if name in points:  # a results file and a leftover log: the results file wins
            continue
        try:
            config, cases = read_any(path, "tables")
        except ValueError:
            continue  # not a results file of drift
        where = (config.get("data"), config.get("data_sha256"), config.get("limit"), config.get("shard"))
        if where not in sizes:
            sizes[where] = split_size(config)
        # a results file is finished unless it is a merge that lacks cases (--allow-missing)
        finished = path.suffix == ".json" and (sizes[where] is None or len(cases) >= sizes[where])
        points[name] = Point(name, path, config, cases, finished, sizes[where])
    return sorted(points.values(), key=_order)


def _order(p: Point) -> tuple:
    """ROME alone first (by steps, then its other knobs), then SADR by steps and γ."""
    hp = sorted((p.config.get("hp") or {}).items())
    heads = p.config.get("sadr_heads") or ""
    return (p.gamma is not None, bool(hp), p.steps, p.gamma or 0.0, heads, hp, p.name)


def _same_cases(a: Point, b: Point) -> bool:
    return {c["case_id"] for c in a.cases} == {c["case_id"] for c in b.cases}


def grid_markers(editor: str) -> tuple[str, str]:
    """The markers of an editor's validation grid in docs/results.md: ROME's grid is the page's
    "validation grid" block, another editor's its own (``validation grid memit``)."""
    if editor == "rome":
        return MARKER, END_MARKER
    return MARKER.replace("grid", f"grid {editor}"), END_MARKER.replace("grid", f"grid {editor}")


def grid_editor(points: list[Point]) -> str:
    """The editor whose grid ``points`` are: its SADR points' (else the first point's)."""
    found = next((p for p in points if p.is_candidate), points[0] if points else None)
    return found.editor if found is not None else "rome"


def _reference(points: list[Point], finished: bool = True) -> Point | None:
    """The grid's editor alone at its preset (finished, unless ``finished=False``)."""
    editor = grid_editor(points)
    return next((p for p in points if p.alone and p.editor == editor and (p.finished or not finished)), None)


def select(points: list[Point]) -> tuple[Point | None, Point | None, dict[str, str]]:
    """The selection rule on the finished points: ``(chosen, reference, why)``, ``why`` saying
    for each finished candidate whether it passes the ES/PS bar (``"ok"``) or why not."""
    ref = _reference(points)
    why: dict[str, str] = {}
    if ref is None:
        return None, None, why
    rs = ref.summary
    best: Point | None = None
    for p in points:
        if not (p.is_candidate and p.finished and p.editor == ref.editor):
            continue
        if not _same_cases(p, ref):
            why[p.name] = "other cases than ROME's"
            continue
        s = p.summary
        low = [m for m in ("ES", "PS") if s.get(m, math.nan) < rs.get(m, math.nan) - TOLERANCE]
        if low:
            why[p.name] = " and ".join(f"{m} {s[m] - rs[m]:+.1f}" for m in low)
            continue
        why[p.name] = "ok"
        rank = (-p.specificity(), p.steps, p.gamma)  # a tie: fewer steps, then the smaller γ
        if best is None or rank < (-best.specificity(), best.steps, best.gamma):
            best = p
    return best, ref, why


def grid_done(points: list[Point]) -> bool:
    """Whether ROME alone and every ROME+SADR point of the paper's grid are finished."""
    done = {(p.steps, p.gamma) for p in points if p.is_candidate and p.finished}
    ref = _reference(points) is not None
    return ref and all((s, g) in done for s in GRID_STEPS for g in GRID_GAMMAS)


def widen(points: list[Point]) -> tuple[int, float] | None:
    """The next point of the upward widening, ``(steps, γ)``, or ``None``: once ROME alone and
    the whole base grid are finished, while the chosen point is the largest γ run at its steps,
    the next γ is twice it (up to :data:`WIDEN_CAP`)."""
    if not grid_done(points):
        return None
    chosen, _, _ = select(points)
    if chosen is None:
        return None
    row = [p.gamma for p in points if p.is_candidate and p.finished and p.steps == chosen.steps]
    nxt = float(f"{2 * chosen.gamma:g}")
    if chosen.gamma < max(row) or nxt > WIDEN_CAP:
        return None
    return chosen.steps, nxt


def final_choice(points: list[Point]) -> Point | None:
    """The rule's choice once it is final: the base grid finished and no widening point pending
    (:func:`widen` only ever names a point not yet finished); ``None`` before that, and when no
    point passes the rule."""
    if not grid_done(points) or widen(points) is not None:
        return None
    return select(points)[0]


def _fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def _what(p: Point) -> str:
    c = p.config
    name = p.editor.upper()
    if p.gamma is not None:
        heads = ", all heads" if c.get("sadr_heads") == "all" else ""
        text = f"{name}+SADR γ={p.gamma:g}{heads}"
    else:
        text = name + (
            " (preset)" if p.is_reference and p.editor == "rome" else ""
        )  # Table 3 names ROME's only
    for k, v in sorted((c.get("hp") or {}).items()):
        text += f", {'ω' if k == 'kl_factor' else k}={v}"
    return text


def _on_cases(ref: Point, p: Point) -> float:
    """``ref``'s mean of NS, RS and DNS over the cases that ``p`` has finished."""
    ids = {c["case_id"] for c in p.cases}
    kept = [c["metrics"] for c in ref.cases if c["case_id"] in ids]
    return ref.specificity(summarise(kept, scoring_of(ref.config)[1])) if kept else math.nan


def grid_table(points: list[Point]) -> str:
    """The validation grid as Markdown: one row per point, the rule's verdict and its choice."""
    chosen, ref, why = select(points)
    reference = ref or _reference(points, finished=False)
    editor = (reference.editor if reference is not None else "rome").upper()
    head = ["point", "steps", "n", *SHOWN, "mean(NS, RS, DNS)", f"{editor}'s, same cases", "rule"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for p in points:
        s = p.summary
        n = f"{len(p.cases)}"
        if not p.finished:
            n += f" of {p.expected}" if p.expected else ""
            n += " (running)" if p.path.name.endswith(".jsonl") else " (incomplete)"
        if p is chosen:
            verdict = "**chosen**"
        elif p is ref or (ref is None and p is reference):
            verdict = "reference"
        elif p.name in why:
            verdict = why[p.name]
        elif p.is_candidate:
            verdict = "unfinished"
        else:
            verdict = ""
        name = f"**{_what(p)}**" if p is chosen else _what(p)
        cells = [name, str(p.steps), n, *(_fmt(s.get(m, math.nan)) for m in SHOWN), _fmt(p.specificity(s))]
        # ROME alone's mean(NS, RS, DNS) over this point's cases: a partial point read fairly
        same = "" if reference is None or p is reference else _fmt(_on_cases(reference, p))
        lines.append("| " + " | ".join([*cells, same, verdict]) + " |")
    finished = sum(p.finished for p in points)
    note = f"{finished} of {len(points)} points finished"
    if ref is None:
        note += f"; the rule waits for {editor} alone (the preset) to finish"
    elif not why:
        note += f"; no {editor}+SADR point has finished yet"
    elif chosen is None:
        note += f"; no finished {editor}+SADR point passes the rule"
    else:
        note += (
            f"; among the finished points the rule chooses {_what(chosen)}, {chosen.steps} steps "
            f"(mean of NS, RS, DNS {chosen.specificity():.1f} against {editor}'s {ref.specificity():.1f})"
        )
        if not grid_done(points):
            note += ", provisionally: the grid is not finished"
    return "\n".join(lines) + "\n\n" + note + "."


def paired_table(points: list[Point]) -> str:
    """Every point against the grid's editor alone at its preset (ROME alone for ROME's grid,
    MEMIT alone for MEMIT's), paired by case (:func:`drift.evaluation.compare.compare_table`)."""
    from drift.evaluation.compare import compare_table

    ref = _reference(points, finished=False)
    if ref is None:
        return f"(no {grid_editor(points).upper()}-alone run yet)"
    rest = [p for p in points if p is not ref]
    runs = [(f"{_what(p)}, {p.steps} steps", {"config": p.config, "cases": p.cases}) for p in [ref, *rest]]
    return compare_table(runs, list(SHOWN))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``pvalues`` (one family; NaN entries, tests with no p, are
    left out of it and stay NaN): the i-th smallest of m p-values times (m − i + 1), made
    monotone and capped at 1. It controls the family-wise error rate under any dependence.

    >>> [round(p, 3) for p in holm([0.01, 0.04, 0.03, float("nan")])]
    [0.03, 0.06, 0.06, nan]
    """
    order = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m, out, running = len(order), [math.nan] * len(pvalues), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def corrected_table(points: list[Point], labels: dict[int, str], editors: list[str]) -> str:
    """Table 3's paired tests, every run against its editor alone on every per-case metric, as
    one family: each test's Holm-adjusted p (:func:`holm`) and Benjamini–Hochberg q
    (``scipy.stats.false_discovery_control``), beside the raw p of the tables above."""
    from scipy.stats import false_discovery_control

    from drift.evaluation.compare import paired_difference

    tests = []  # (editor, run label, metric, Paired)
    for editor in editors:
        runs = [p for p in points if p.config.get("editor") == editor]
        ref = runs[0]
        have = {m for p in runs for c in p.cases for m in c["metrics"]}
        metrics = [m for m in TABLE3 if m in have and m != "AvgS"]
        for p in runs[1:]:
            for m in metrics:
                tests.append((editor, labels[id(p)], m, paired_difference(ref.cases, p.cases, m)))
    raw = [t[3].p for t in tests]
    defined = [p for p in raw if not math.isnan(p)]
    adjusted = holm(raw)
    q_of = iter(false_discovery_control(defined, method="bh") if defined else [])
    q = [math.nan if math.isnan(p) else float(next(q_of)) for p in raw]
    runs_shown = list(dict.fromkeys((t[0], t[1]) for t in tests))
    metrics = list(dict.fromkeys(t[2] for t in tests))
    cell = {(t[0], t[1], t[2]): (t[3], a, b) for t, a, b in zip(tests, adjusted, q)}
    lines = [
        f"Corrected for multiple comparisons: the {len(tests)} paired tests above as one family, "
        f"{len(defined)} of them with a p (the rest have no spread); each cell the raw p, then "
        "Holm's adjusted p (family-wise error) / Benjamini–Hochberg's q (false discovery rate); "
        "**bold**: Holm's p < 0.05.",
        "",
        "| run | " + " | ".join(metrics) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    for editor, label in runs_shown:
        cells = []
        for m in metrics:
            found = cell.get((editor, label, m))
            if found is None or math.isnan(found[0].p):
                cells.append("—")
                continue
            d, a, b = found
            text = f"{d.p:.2g} → {a:.2g} / {b:.2g}"
            cells.append(f"**{text}**" if a < 0.05 else text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    survive = [(t[1], t[2], t[3].mean) for t, a in zip(tests, adjusted) if a < 0.05]
    lines += [
        "",
        f"{len(survive)} of {len(defined)} differences keep Holm's p < 0.05: "
        + (", ".join(f"{label}: {m} {mean:+.1f}" for label, m, mean in survive) or "none")
        + ".",
    ]
    return "\n".join(lines)


def test_table(points: list[Point]) -> str:
    """Table 3 on the test cases: per editor, the editor alone then every other run of it (SADR at
    each setting, more steps), each paired by case against the editor alone
    (:func:`drift.evaluation.compare.compare_table`), then every paired test's p corrected for the whole
    table (:func:`corrected_table`). A run still going shows its finished cases."""
    from drift.evaluation.compare import compare_table

    blocks = []
    ordered: list[Point] = []
    labels: dict[int, str] = {}
    shown_editors: list[str] = []
    order = ("rome", "rome-awd", "memit", "pmet", "adaple")
    editors = sorted(
        {p.config.get("editor") for p in points} - {"none"},  # the unedited run is no editor's row
        key=lambda e: (e not in order, order.index(e) if e in order else 0, e),
    )
    for editor in editors:
        runs = [p for p in points if p.config.get("editor") == editor]
        alone = [p for p in runs if not (p.config.get("sadr") or p.config.get("steps") or p.config.get("hp"))]
        runs = alone[:1] + [p for p in runs if p not in alone[:1]]

        def label(p: Point) -> str:
            what = _what(p).replace("ROME", editor.upper(), 1) if editor != "rome" else _what(p)
            n = f"{len(p.cases)}" + ("" if p.finished else f" of {p.expected} (running)")
            return f"{what}, {p.steps} steps [{n}]"

        have = {m for p in runs for c in p.cases for m in c["metrics"]}
        shown = [m for m in TABLE3 if m in have or (m == "AvgS" and "ES" in have)]
        table = compare_table([(label(p), {"config": p.config, "cases": p.cases}) for p in runs], shown)
        ordered += runs
        labels |= {id(p): label(p) for p in runs}
        shown_editors.append(editor)
        if not alone:
            table = (
                f"({editor} alone has not run yet: the differences are against {label(runs[0])})\n\n" + table
            )
        blocks.append(f"**{editor.upper()}**\n\n{table}")
    if any(len([p for p in ordered if p.config.get("editor") == e]) > 1 for e in shown_editors):
        blocks.append(corrected_table(ordered, labels, shown_editors))
    return "\n\n".join(blocks)


def _rel(a: float | None, b: float | None) -> str:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or a == 0:
        return "—"
    return f"{100 * (b - a) / a:+.1f}%"


def paper_table(test: list[Point]) -> str:
    """The SADR paper's GPT-J numbers beside drift's on this model's 59 test cases: each side's
    ROME and ROME+SADR and the relative change ``(SADR − ROME) / ROME``; drift's at the chosen
    point (γ 4e-2, 20 steps) against ROME at its 20 steps, and at GPT-J's setting (γ 1e-2, 80
    steps) against ROME at 80 steps (its control) and at 20."""
    by_name = {p.name: p for p in test}
    gptj, table10 = "GPT-J-6B, paper Table 3/6 (1683 cases)", "GPT-J-6B, paper Table 10 (500 cases)"
    rows: list[tuple[str, dict | None, dict | None]] = [
        (f"{gptj}: ROME → ROME+SADR γ 1e-2, 80 steps", PAPER_GPTJ["ROME"], PAPER_GPTJ["ROME+SADR"]),
        (f"{table10}: ROME → ROME+SADR γ 4e-2", PAPER_TABLE10["ROME"], PAPER_TABLE10["ROME+SADR"]),
    ]

    def summary(name: str) -> dict | None:
        p = by_name.get(name)
        return None if p is None else p.summary

    ours = "SmolLM2-135M, drift (59 cases)"
    for label, a, b in (
        (f"{ours}: ROME → ROME+SADR γ 4e-2, 20 steps (the chosen point)", "rome_s20", "rome_sadr_g0.04_s20"),
        (
            f"{ours}: ROME 80 steps → γ 1e-2, 80 steps (GPT-J's, its control)",
            "rome_s80",
            "rome_sadr_g0.01_s80",
        ),
        (f"{ours}: ROME 20 steps → γ 1e-2, 80 steps (GPT-J's setting)", "rome_s20", "rome_sadr_g0.01_s80"),
    ):
        rows.append((label, summary(a), summary(b)))
    lines = [
        "| model, source: ROME → ROME+SADR | " + " | ".join(PAPER_METRICS) + " |",
        "|---" * (len(PAPER_METRICS) + 1) + "|",
    ]
    for label, a, b in rows:
        if a is None or b is None:
            continue
        cells = []
        for m in PAPER_METRICS:
            x, y = a.get(m), b.get(m)
            cells.append("—" if x is None or y is None else f"{x:.1f} → {y:.1f} ({_rel(x, y)})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_table(test: list[Point], seeds: list[Point]) -> str:
    """Run-to-run variation: ROME and the chosen ROME+SADR with Table 3's context prefixes (draw 0,
    ``results/test``) and with a second draw (``--hp prefix_seed=1``, ``results/seed``), on the
    cases every one of the four runs has finished: each run's scores, then the SADR effect within
    each draw and the draw's effect on each editor, paired by case (mean; cases better / worse)."""
    from drift.evaluation.compare import paired_difference

    def find(points: list[Point], name: str) -> Point | None:
        return next((p for p in points if p.name == name), None)

    runs = {
        "ROME, draw 0": find(test, "rome_s20"),
        "ROME+SADR γ 4e-2, 20 steps, draw 0": find(test, "rome_sadr_g0.04_s20"),
        "ROME, draw 1": find(seeds, "rome_s20_p1"),
        "ROME+SADR γ 4e-2, 20 steps, draw 1": find(seeds, "rome_sadr_g0.04_s20_p1"),
    }
    have = {k: p for k, p in runs.items() if p is not None and p.cases}
    if not have:
        return "(no run of either draw yet)"
    done = [p for p in have.values() if p.finished] or list(have.values())
    common = set.intersection(*({str(c["case_id"]) for c in p.cases} for p in done))
    rows = {k: [c for c in p.cases if str(c["case_id"]) in common] for k, p in have.items()}
    pairs_rows = {k: p.cases for k, p in have.items()}  # each pair on the cases both runs have
    metrics = ("ES", "PS", "NS", "RS", "DNS", "EM", "PM", "RM", "DNM")
    pool = next(iter(have.values())).config.get("pool", "prompts")
    lines = [
        f"On the {len(common)} test cases the finished runs share (a run still going: the ones it "
        f"has; {', '.join(f'{k}: {len(p.cases)}' for k, p in have.items())} finished); each pair "
        "below on the cases both of its runs have:",
        "",
        "| run | " + " | ".join(metrics) + " |",
        "|---" * (len(metrics) + 1) + "|",
    ]
    for k, r in rows.items():
        summ = summarise([c["metrics"] for c in r], pool)
        lines.append(f"| {k} | " + " | ".join(_fmt(summ[m]) if m in summ else "—" for m in metrics) + " |")
    sadr0, sadr1 = "ROME+SADR γ 4e-2, 20 steps, draw 0", "ROME+SADR γ 4e-2, 20 steps, draw 1"
    pairs = [
        ("SADR effect, draw 0", "ROME, draw 0", sadr0),
        ("SADR effect, draw 1", "ROME, draw 1", sadr1),
        ("draw effect on ROME (1 − 0)", "ROME, draw 0", "ROME, draw 1"),
        ("draw effect on ROME+SADR (1 − 0)", sadr0, sadr1),
    ]
    lines += ["", "| paired by case (mean; better / worse) | " + " | ".join(metrics) + " |"]
    lines.append("|---" * (len(metrics) + 1) + "|")
    for label, a, b in pairs:
        if a not in rows or b not in rows:
            continue
        cells = []
        for m in metrics:
            d = paired_difference(pairs_rows[a], pairs_rows[b], m)
            cells.append("—" if d.n == 0 else f"{d.mean:+.1f} ({d.better}/{d.worse})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def retention_table(folder: Path) -> str:
    """Retention of a fixed early set (``drift sequential --retention K``): for each run, ES / EM
    of its first K edits after 10, 25, 50 and 100 stacked edits, from the finished runs
    (``sequential-runs.jsonl``) or, for a run still going, its logged checkpoints
    (``sequential-checkpoints.jsonl``), and EM's change relative to after 10 edits."""
    from drift.cli.runs import read_records

    runs: dict[str, dict] = {}
    for path in sorted(folder.glob("sequential-checkpoints.jsonl")):
        for line in path.read_text().splitlines():
            try:
                rec = __import__("json").loads(line)
            except ValueError:
                continue
            runs.setdefault(rec["key"], {"label": rec["label"], "done": False, "at": {}})["at"][
                rec["n_edits"]
            ] = rec
    for key, rec in read_records(folder / "sequential-runs.jsonl").items():
        if rec["config"].get("retention") is None:
            continue
        entry = runs.setdefault(key, {"label": rec["label"], "at": {}})
        entry["done"] = True
        entry["at"] |= {c["n_edits"]: c for c in rec["checkpoints"]}
    if not runs:
        return "(no retention run has reached a checkpoint yet)"
    lines = [
        "| run | " + " | ".join(f"ES / EM after {n}" for n in SEQ_MARKS)
        + " | EM relative to after 10: " + " / ".join(str(n) for n in SEQ_MARKS[1:]) + " | status |",
        "|---" * (len(SEQ_MARKS) + 3) + "|",
    ]  # fmt: skip
    for entry in runs.values():
        at = entry["at"]
        cells = []
        for n in SEQ_MARKS:
            s = at.get(n, {}).get("summary")
            cells.append(
                "—" if s is None else f"{_fmt(s.get('ES', math.nan))} / {_fmt(s.get('EM', math.nan))}"
            )
        base = at.get(SEQ_MARKS[0], {}).get("summary", {}).get("EM")
        rel = [
            _rel(base, at.get(n, {}).get("summary", {}).get("EM")) if n in at else "—" for n in SEQ_MARKS[1:]
        ]
        last = max(at) if at else 0
        status = "finished" if entry.get("done") else f"running (last checkpoint {last})"
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + f" | {' / '.join(rel)} | {status} |")
    return "\n".join(lines)


def audit_rows(folder: Path) -> tuple[list[dict], list[str]]:
    """The audited cases of ``scripts/audit_runs.sh``'s shards in ``folder``: every case of a
    finished shard (``aI.json``) and of one still running (its log ``aI.json.partial.jsonl``),
    and a word per shard: finished, running (cases so far) or not started."""
    import json

    rows: dict[str, dict] = {}
    status = []
    for i in AUDIT_SHARDS:
        done, log = folder / f"a{i}.json", folder / f"a{i}.json.partial.jsonl"
        if done.exists():
            cases = json.loads(done.read_text())["cases"]
            status.append(f"{i} finished ({len(cases)})")
        elif log.exists():
            cases = []
            for line in log.read_text().splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut by a stop
                if "case_id" in row:
                    cases.append(row)
            status.append(f"{i} running ({len(cases)} so far)")
        else:
            cases = []
            status.append(f"{i} not started")
        rows |= {str(r["case_id"]): r for r in cases}
    return list(rows.values()), status


def audit_table(folder: Path, boot: int = 2000) -> str:
    """The audit's tables (docs/results.md, "Auditing an edit before it ships") from the shards in
    ``folder`` (:func:`audit_rows`): per edit, each signal's AUROC for the label "breaks at least
    one prompt the unedited model got right", with a 95% bootstrap interval (edits resampled, ``boot``
    times), the cross-fitted combined score and the prompt-count baseline; per prompt, each task's
    prompts right before, how many broke, and each signal's AUROC (intervals resample edits). Then
    the 25 signal AUROCs as one family: each whose 95% interval leaves out 0.5 again at the
    Bonferroni level (1 − 0.05/25, from 5 × ``boot`` draws), and whether it still does."""
    from drift.interp.audit import SIGNALS, auroc, auroc_ci, per_prompt, report

    rows, status = audit_rows(folder)
    kept = [r for r in rows if r.get("label") is not None]
    if len(kept) < 4:
        return f"(fewer than 4 labelled audited cases yet; shards: {', '.join(status)})"
    summary = report(kept)
    labels = [r["label"] for r in kept]
    with_before = [r for r in kept if r.get("right_before") is not None]

    def cell(value: float, ci) -> str:
        return "—" if value is None or math.isnan(value) else f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"

    def per_edit(name: str, level: float, n: int) -> tuple[float, tuple[float, float]]:
        vals = [r["metrics"][name] for r in kept]
        return auroc(vals, labels), auroc_ci(vals, labels, n=n, level=level)

    def prompts(name: str, task: str | None, level: float, n: int) -> dict:
        scores = [r["metrics"][name] for r in with_before]
        return per_prompt(scores, with_before, task=task, n=n, level=level)

    family: dict[str, tuple] = {}  # each signal AUROC: its 95% interval and how to redraw it wider
    lines = [
        f"{len(rows)} of 207 cases audited, {len(kept)} labelled (the rest have no NS, RS or DNS prompt "
        f"the unedited model answers right), {sum(labels)} of them failing; shards: {', '.join(status)}.",
        "",
        "| per edit | AUROC [95% interval] |",
        "|---|---|",
    ]
    for name in SIGNALS:
        value, ci = per_edit(name, 0.95, boot)
        family[f"{name} per edit"] = (value, ci, lambda lv, n, name=name: per_edit(name, lv, n)[1])
        lines.append(f"| {name} | {cell(value, ci)} |")
    lines += [
        f"| combined ({summary['fit']}) | {cell(summary['auroc'], summary['auroc_ci'])} |",
        f"| the case's prompt count alone | {summary.get('baseline_prompt_count', math.nan):.2f} |",
        "",
        f"Precision of the combined score at 80% recall: {summary['precision_at_recall']['0.8']:.2f}, "
        f"against a base rate of {sum(labels)} / {len(labels)} = {sum(labels) / len(labels):.2f}.",
        "",
        "| per prompt | prompts right before | broken | " + " | ".join(SIGNALS) + " |",
        "|---|---|---|" + "---|" * len(SIGNALS),
    ]
    for task in (None, "NS", "RS", "DNS"):
        views = [prompts(name, task, 0.95, boot) for name in SIGNALS]
        cells = [str(views[0]["prompts"]), str(views[0]["broken"])]
        for name, v in zip(SIGNALS, views):
            cells.append(cell(v["auroc"], v["auroc_ci"]))
            redraw = lambda lv, n, name=name, task=task: prompts(name, task, lv, n)["auroc_ci"]  # noqa: E731
            family[f"{name} on {task or 'all'} prompts"] = (v["auroc"], v["auroc_ci"], redraw)
        lines.append(f"| {task or 'all'} | " + " | ".join(cells) + " |")
    level = 1 - 0.05 / len(family)
    held, lost = [], []
    for what, (value, ci, redraw) in family.items():
        if not math.isnan(value) and (ci[0] > 0.5 or ci[1] < 0.5):
            wide = redraw(level, 5 * boot)
            (held if wide[0] > 0.5 or wide[1] < 0.5 else lost).append(f"{what} {cell(value, wide)}")
    lines += [
        "",
        f"As one family of {len(family)} AUROCs (Bonferroni, {100 * level:.1f}% intervals): "
        + (f"still away from 0.5: {'; '.join(held)}" if held else "none stays away from 0.5")
        + (f"; no longer: {'; '.join(lost)}." if lost else "."),
    ]
    return "\n".join(lines)


def sequential_table(folder: Path) -> str:
    """The 100-edit table from ``python -m drift sequential`` runs (``folder/*/sequential-runs.jsonl``,
    one record per finished run, as ``--part`` writes them): for each attenuation curve, ES / EM of
    all edits so far at 10, 25, 50 and 100 stacked edits and PS / NS at its last; then the drop-rate
    sweep, one row per drop rate. Runs not finished yet are absent."""
    from drift.cli.runs import read_records

    records = {}
    for path in sorted(folder.glob("*/sequential-runs.jsonl")) + sorted(folder.glob("sequential-runs.jsonl")):
        records |= read_records(path)
    curves = [r for r in records.values() if len(r["checkpoints"]) > 1]
    sweep = [r for r in records.values() if len(r["checkpoints"]) == 1]
    if not records:
        return "(no finished sequential run yet)"

    def at(rec: dict, n: int) -> dict | None:
        return next((c["summary"] for c in rec["checkpoints"] if c["n_edits"] == n), None)

    def pair(summary: dict | None, a: str, b: str) -> str:
        if summary is None or summary.get(a) is None:
            return ""
        return f"{_fmt(summary[a])} / {_fmt(summary[b])}" if summary.get(b) is not None else _fmt(summary[a])

    order = {"memit": 0, "adaple": 1}
    curves.sort(key=lambda r: (order.get(r["config"]["editor"], 2), r["config"].get("dr") or 0, r["label"]))
    head = " | ".join(f"ES / EM after {n}" for n in SEQ_MARKS)
    lines = [
        f"| run | {head} | PS / NS at the last | minutes |",
        "|---|" + "---|" * (len(SEQ_MARKS) + 2),
    ]
    for r in curves:
        last = r["checkpoints"][-1]
        cells = [pair(at(r, n), "ES", "EM") for n in SEQ_MARKS]
        tail = f"{pair(last['summary'], 'PS', 'NS')} ({last['n_edits']})"
        minutes = f"{r.get('seconds', 0) / 60:.0f}"
        lines.append(f"| {r['label']} | " + " | ".join(cells) + f" | {tail} | {minutes} |")
    if sweep:
        sweep.sort(key=lambda r: r["config"].get("dr") or 0)
        n = sweep[0]["checkpoints"][0]["n_edits"]
        lines += [
            "",
            f"Drop-rate sweep ({sweep[0]['config']['editor']}, {n} stacked edits):",
            "",
            "| drop rate | ES / EM | PS / PM | NS / NM |",
            "|---|---|---|---|",
        ]
        for r in sweep:
            s_ = r["checkpoints"][0]["summary"]
            cells = [pair(s_, "ES", "EM"), pair(s_, "PS", "PM"), pair(s_, "NS", "NM")]
            lines.append(f"| {r['config'].get('dr') or 0:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def update(doc: Path, table: str, marker: str = MARKER, end_marker: str = END_MARKER) -> None:
    """Replace the text between ``marker`` and ``end_marker`` in ``doc`` by ``table``."""
    text = doc.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(marker) + r".*?" + re.escape(end_marker), re.S)
    if not pattern.search(text):
        raise SystemExit(f"tables: {doc} has no {marker} ... {end_marker} block")
    save_text(doc, pattern.sub(lambda _: f"{marker}\n{table}\n{end_marker}", text, count=1))


def figure_main(argv, name: str, doc: str, table, figure, marker: str, end_marker: str, width=None) -> int:
    """The command line of a figure script over the grid's results (``analyses/fig6.py``,
    ``fig7.py``): print ``table(points)``; ``--figure STEM`` saves ``figure(points)``;
    ``--update DOC.md`` rewrites the table between ``marker`` and ``end_marker``."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--results", default=str(ROOT / "results" / "validation"), help="the grid's folder")
    ap.add_argument("--figure", metavar="STEM", help="also write STEM.png and STEM.html")
    ap.add_argument("--update", metavar="DOC.md", help="rewrite the table between its markers in DOC.md")
    args = ap.parse_args(argv)
    points = load_points(Path(args.results))
    if not points:
        print(f"{name}: no results in {args.results}", file=sys.stderr)
        return 1
    text = table(points)
    print(text)
    if args.figure:
        from drift import plots

        written = plots.save(figure(points), args.figure, width=width)
        print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    if args.update:
        update(Path(args.update), text, marker, end_marker)
        print(f"wrote the table into {args.update}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=str(ROOT / "results" / "validation"), help="the grid's folder")
    ap.add_argument("--paired", action="store_true", help="also each point minus ROME, paired by case")
    ap.add_argument("--update", metavar="DOC.md", help="rewrite the grid's table between its markers")
    ap.add_argument("--widen", action="store_true", help="print 'STEPS GAMMA' of the next widening point")
    ap.add_argument(
        "--test", action="store_true", help="Table 3: the folder's runs per editor, paired by case"
    )
    ap.add_argument(
        "--sequential",
        action="store_true",
        help="the 100-edit table from the folder's `drift sequential` runs",
    )
    ap.add_argument(
        "--chosen",
        action="store_true",
        help="print 'STEPS GAMMA' of the rule's final choice (nothing before it)",
    )
    ap.add_argument(
        "--paper",
        action="store_true",
        help="the SADR paper's GPT-J numbers beside drift's Table 3 rows (--results: the test runs)",
    )
    ap.add_argument(
        "--seeds",
        metavar="DIR",
        help="a second draw of ROME's context prefixes (results/seed) beside Table 3's (--results)",
    )
    ap.add_argument(
        "--retention",
        action="store_true",
        help="retention of a fixed early set from the folder's `drift sequential --retention` runs",
    )
    ap.add_argument(
        "--audit",
        action="store_true",
        help="the audit's AUROCs from the folder's shards (scripts/audit_runs.sh), finished or running",
    )
    args = ap.parse_args(argv)
    here = Path(args.results)
    for flag, make, marks in (
        (args.paper, lambda: paper_table(load_points(here)), (PAPER_MARKER, PAPER_END_MARKER)),
        (
            args.seeds,
            lambda: seed_table(load_points(here), load_points(Path(args.seeds or "."))),
            (SEED_MARKER, SEED_END_MARKER),
        ),
        (args.retention, lambda: retention_table(here), (RETENTION_MARKER, RETENTION_END_MARKER)),
        (args.audit, lambda: audit_table(here), (AUDIT_MARKER, AUDIT_END_MARKER)),
    ):
        if flag:
            table = make()
            print(table)
            if args.update:
                update(Path(args.update), table, *marks)
                print(f"wrote the table into {args.update}", file=sys.stderr)
            return 0
    if args.sequential:
        table = sequential_table(Path(args.results))
        print(table)
        if args.update:
            update(Path(args.update), table, SEQ_MARKER, SEQ_END_MARKER)
            print(f"wrote the table into {args.update}", file=sys.stderr)
        return 0
    points = load_points(Path(args.results))
    if args.widen:
        nxt = widen(points)
        if nxt is not None:
            print(f"{nxt[0]} {nxt[1]:g}")
        return 0
    if args.chosen:
        chosen = final_choice(points)
        if chosen is not None:
            print(f"{chosen.steps} {chosen.gamma:g}")
        return 0
    if not points:
        print(f"tables: no results in {args.results}", file=sys.stderr)
        return 1
    if args.test:
        table = test_table(points)
        print(table)
        if args.update:
            update(Path(args.update), table, TEST_MARKER, TEST_END_MARKER)
            print(f"wrote the table into {args.update}", file=sys.stderr)
        return 0
    table = grid_table(points)
    print(table)
    if args.paired:
        print()
        print(paired_table(points))
    if args.update:
        update(Path(args.update), table, *grid_markers(grid_editor(points)))
        print(f"wrote the table into {args.update}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
