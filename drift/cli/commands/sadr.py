"""SADR's tables and figures: the main paper's Table 3, Fig. 6 and Fig. 7 on one model.

    python -m drift sadr                                   # default model, built-in cases, ROME
    python -m drift sadr --editors rome,memit,pmet \
        --data ../shared/data/counterfact-merged-dev.json --limit 200
    python -m drift sadr --gamma 1e-2,1e-1 ...             # one Table 3 row per γ (the paper's scale)

- Table 3: None / editor / editor+SADR for each editor, ES PS NS RS DNS and Avg S with 95% CIs.
- Fig. 6: selective vs all heads over γ (first editor), ES, RS and DNS (:func:`fig6`).
- Fig. 7: edit success (mean of EM and PM) against specificity (RM, DNM) for SADR's γ and for the
  editor's own knobs: optimisation steps, learning rate and ω (:func:`fig7`).

Each figure is drawn by one function from results files: this command's runs (:class:`Run`) or
the validation grid's (``analyses/fig6.py``, ``analyses/fig7.py`` call the same functions).

The grid is a sweep (drift.cli.sweep): every distinct configuration is one ``eval`` run, its results
file ``OUT/runs/NAME.json``, NAME made from the run's options (:func:`run_name`; ``sadr.json``'s
``runs`` maps each label to it), its cases cut into chunks of ``--chunk``. By default the chunks run in
this process; ``--ray`` runs them on a local Ray instance (one worker per core, or ``--per-gpu``
workers sharing each GPU with ``--device cuda``), ``--address`` on an existing Ray cluster. An
interrupted run resumes where it stopped, down to the last finished case; ``--restart`` redoes
runs whose configuration changed. Any run can be read with ``python -m drift compare``.
Writes ``OUT/*.html``, ``OUT/*.png``, ``OUT/sadr.json`` and prints the table.
(``python analyses/sadr.py`` is the same command.)
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drift.cli import options as O
from drift.cli.script import parse_script
from drift.cli.sweep import RunSpec, slug

TABLE = ["ES", "PS", "NS", "RS", "DNS", "AvgS"]


def add_options(p: argparse.ArgumentParser) -> None:
    """``sadr``'s options: the eval options its runs share, the grid, and where the chunks run."""
    O.add_data(p, limit=8)
    O.add_model(p)
    O.add_run(p)
    O.add_output(p, kind="folder", default="figures/sadr")
    g = p.add_argument_group("sadr")
    g.add_argument(
        "--sweep-limit",
        type=O.positive_int,
        default=4,
        help="cases per point of Fig. 6 and Fig. 7 (default 4)",
    )
    g.add_argument(
        "--editors",
        type=O.editor_list,
        default="rome",
        help=O.EDITORS_HELP + " (default: rome; the rows of Table 3)",
    )
    g.add_argument(
        "--table-gammas",
        dest="gamma",
        type=O.floats,
        default=None,
        metavar="G[,G...]",
        help="SADR γ for Table 3, one row per value (default: the editor's for the model, "
        "drift.editors.presets.SADR_SETTINGS: the paper's, GPT-J's for a model without a row; "
        "SmolLM2-135M's ROME 4e-2, chosen on validation: results/validation/rome_sadr_g0.04_s20.json)",
    )
    g.add_argument(
        "--sadr-steps",
        dest="steps",
        type=O.positive_int,
        default=None,
        help="steps of the SADR runs (default: the editor's for the model, as --table-gammas: GPT-J's "
        "ROME 80, MEMIT 20, PMET 40; SmolLM2-135M's ROME 20)",
    )
    g.add_argument(
        "--figure-gammas", dest="gammas", type=O.floats, default="1e-3,1e-2,1e-1", help="γ grid of Fig. 6/7"
    )
    g.add_argument("--knob-steps", type=O.floats, default="20,40,80", help="ROME steps grid of Fig. 7")
    g.add_argument(
        "--knob-lr", type=O.floats, default="0.05,0.2,0.5", help="ROME learning-rate grid of Fig. 7"
    )
    g.add_argument("--knob-kl", type=O.floats, default="0.0625,1,4", help="ROME ω grid of Fig. 7")
    g.add_argument("--no-figures", action="store_true", help="Table 3 only")
    O.add_engine(p, flag=True)


def parse(argv=None) -> argparse.Namespace:
    """``analyses/sadr.py``'s options: this command's, and ``-v``/``-q``."""
    return parse_script("analyses/sadr.py", __doc__, add_options, argv)


def _sadr(gamma: float, heads: str = "selective") -> dict:
    return {"sadr": gamma, "sadr_heads": heads}


def main(argv=None) -> dict:
    """``python analyses/sadr.py ARGS``: the tables and figures with the script's own parser."""
    return run(parse(argv))


def _provenance(args) -> dict:
    """The data by name and what ran the grid (:func:`drift.cli.spec.provenance`)."""
    from drift.cli.spec import file_name, provenance

    device = {"device": args.device} if getattr(args, "device", None) else {}
    return {
        "data": file_name(args.data),
        "out": file_name(str(args.out)),  # no path of the machine in a results file
        "provenance": provenance(data=args.data, dtype=args.dtype or "fp32", **device),
    }


def setting(editor: str, model: str, gamma: list[float] | None = None, steps: int | None = None) -> tuple:
    """``(γ values, steps)`` of ``editor``'s SADR rows on ``model`` (a name): the given ones, else
    the model's setting (:func:`drift.editors.presets.sadr_setting`; on the default SmolLM2-135M,
    ROME's is its validation grid's choice, γ 4e-2 at 20 steps).

    >>> setting("rome", "HuggingFaceTB/SmolLM2-135M-Instruct"), setting("rome", "EleutherAI/gpt-j-6b")
    (([0.04], 20), ([0.01], 80))
    """
    from drift.editors.presets import sadr_setting

    found = sadr_setting(editor, model)
    return (list(gamma) if gamma else [found["gamma"]]), (steps or found["steps"])


@dataclass(frozen=True)
class Planned:
    """One run of the grid: ``label`` names it in Table 3 and in ``sadr.json``, ``in_table`` says
    whether it is a row of Table 3 (else a point of Fig. 6/7), and ``run`` is the sweep's run,
    named by :func:`run_name` from its options (a label is never read back)."""

    label: str
    in_table: bool
    run: RunSpec


def run_name(options: dict) -> str:
    """The results file's stem of a grid run, from its options: the editor, SADR's heads and γ,
    the steps, each hyper-parameter (``lr``, ``kl`` for ω, others by name) and ``nLIMIT``, the
    cases it runs. Options that the grid's runs share (data, model, seed) are not in it.

    >>> run_name({"editor": "rome", "sadr": 0.04, "sadr_heads": "all", "steps": 20, "limit": 4})
    'rome_sadr_all_g0.04_s20_n4'
    >>> run_name({"editor": "rome", "hp": {"kl_factor": 4.0}, "limit": 8}), run_name({"editor": "none"})
    ('rome_kl4_n8', 'none')
    """
    parts = [str(options.get("editor") or "none")]
    if options.get("sadr"):
        heads = ["all"] if options.get("sadr_heads") == "all" else []
        parts += ["sadr", *heads, f"g{options['sadr']:g}"]
    if options.get("steps"):
        parts.append(f"s{options['steps']}")
    short = {"lr": "lr", "kl_factor": "kl"}
    for k, v in sorted((options.get("hp") or {}).items()):
        parts.append(short.get(k, k) + (f"{v:g}" if isinstance(v, (int, float)) else str(v)))
    if options.get("limit") is not None:
        parts.append(f"n{options['limit']}")
    return slug("_".join(parts))


def run(args: argparse.Namespace) -> dict:
    """SADR's tables and figures for ``args`` (from :func:`parse` or ``python -m drift sadr``)."""
    import warnings

    import drift

    warnings.filterwarnings("ignore", category=UserWarning)
    t0 = time.time()
    out = Path(args.out)
    model_name = args.model or drift.DEFAULT_MODEL
    grid = _plan(args, _grid(args))
    finished = _run_grid(args, grid, out / "runs")
    results = {p.label: finished[p.run.name]["summary"] for p in grid}
    unedited = next(p for p in grid if p.run.options["editor"] == "none")
    n_cases = len(finished[unedited.run.name]["cases"])
    table_rows = [[p.label] + [_cell(results[p.label], m) for m in TABLE] for p in grid if p.in_table]
    written = _write_table(table_rows, out, f"{model_name}, {n_cases} cases of {Path(args.data).name}")
    if not args.no_figures:
        written += _write_figures(args, [p for p in grid if not p.in_table], out)
    result = {
        "config": vars(args) | {"model": model_name, "n_cases": n_cases} | _provenance(args),
        "results": results,
        "runs": {p.label: p.run.name for p in grid},
        "table3": {r[0]: dict(zip(TABLE, r[1:], strict=True)) for r in table_rows},
        "seconds": time.time() - t0,
    }
    from drift.util.store import save_json

    save_json(out / "sadr.json", json.loads(json.dumps(result, default=str)))
    print(f"{'method':<28}" + "".join(f"{m:>16}" for m in TABLE))
    for r in table_rows:
        print(f"{r[0]:<28}" + "".join(f"{c:>16}" for c in r[1:]))
    print(f"wrote {len(written)} figure files and {out / 'sadr.json'} in {result['seconds']:.0f} s")
    return result


def _grid(args: argparse.Namespace) -> list[tuple[str, bool, dict]]:
    """The runs, as (label, in Table 3, eval options): Table 3's rows (None, then per editor the
    editor alone and with SADR at each γ), then unless ``--no-figures`` the first editor's points
    of Fig. 6 (γ × selective/all heads) and Fig. 7 (its base run and its own knobs)."""
    import drift

    model_name = args.model or drift.DEFAULT_MODEL

    def steps(e: str) -> dict:  # the model's setting: the default model's own, not GPT-J's
        return {"steps": setting(e, model_name, None, args.steps)[1]}

    grid: list[tuple[str, bool, dict]] = [("None", True, {"editor": "none"})]
    for e in args.editors:
        gs = setting(e, model_name, args.gamma)[0]
        grid += [(e.upper(), True, {"editor": e})] + [
            (f"{e.upper()}+SADR (γ={g:g})", True, {"editor": e} | _sadr(g) | steps(e)) for g in gs
        ]
    if args.no_figures:
        return grid
    first = args.editors[0]
    grid += [
        (f"{first} γ={g:g} {h}", False, {"editor": first} | _sadr(g, h) | steps(first))
        for h in ("selective", "all")
        for g in args.gammas
    ]
    grid += [(f"{first} base", False, {"editor": first})]
    grid += [(f"{first} steps={s:g}", False, {"editor": first, "steps": int(s)}) for s in args.knob_steps]
    grid += [(f"{first} lr={v:g}", False, {"editor": first, "hp": {"lr": v}}) for v in args.knob_lr]
    grid += [(f"{first} ω={v:g}", False, {"editor": first, "hp": {"kl_factor": v}}) for v in args.knob_kl]
    return grid


def _plan(args: argparse.Namespace, grid: list[tuple[str, bool, dict]]) -> list[Planned]:
    """The grid's runs with their whole options (Table 3's runs on ``--limit`` cases, the figures'
    on ``--sweep-limit``), each named by :func:`run_name`: a configuration asked twice is one run."""
    shared = {"data": args.data, "model": args.model, "seed": args.seed, "no_fluency": True}
    if args.dtype:
        shared["dtype"] = args.dtype
    planned: list[Planned] = []
    by_name: dict[str, RunSpec] = {}
    for label, in_table, options in grid:
        options = shared | {"limit": args.limit if in_table else args.sweep_limit} | options
        spec = by_name.setdefault(run_name(options), RunSpec(run_name(options), options))
        if spec.options != options:
            raise ValueError(
                f"sadr: two runs of the grid are both named {spec.name!r}: {spec.options} and {options}"
            )
        planned.append(Planned(label, in_table, spec))
    return planned


def _run_grid(args: argparse.Namespace, grid: list[Planned], runs: Path) -> dict[str, dict]:
    """Run ``grid``'s distinct runs as a sweep into ``runs``: each run's results by run name."""
    from drift.cli.sweep import execute

    distinct = {p.run.name: p.run for p in grid}
    return execute(
        list(distinct.values()),
        runs,
        chunk=args.chunk,
        engine="ray" if args.ray else "local",
        address=args.address,
        workers=args.workers,
        device=args.device,
        per_gpu=args.per_gpu,
        restart=args.restart,
    )


def _write_table(table_rows: list[list[str]], out: Path, what: str) -> list[Path]:
    """Table 3 (``out/table3.*``) of ``what`` ("MODEL, N cases of FILE"); the files written."""
    from drift import plots

    table = plots.table(["method"] + TABLE, table_rows, title=f"Table 3 layout: {what}")
    return plots.save(table, out / "table3")


def _write_figures(args: argparse.Namespace, points: list[Planned], out: Path) -> list[Path]:
    """Fig. 6 (``out/fig6_selective_vs_all.*``) and Fig. 7 (``out/fig7_tradeoff.*``) of the first
    editor, drawn by :func:`fig6` and :func:`fig7` from the results files of the figures' runs
    ``points``; the files written."""
    import drift
    from drift import plots

    first = args.editors[0]
    steps = setting(first, args.model or drift.DEFAULT_MODEL, None, args.steps)[1]
    runs = [Run.read(out / "runs" / f"{p.run.name}.json") for p in points]
    written = plots.save(fig6(runs, first, steps), out / "fig6_selective_vs_all")
    return written + plots.save(fig7(runs, first, split=""), out / "fig7_tradeoff")


def _cell(summary: dict, metric: str) -> str:
    value = summary.get(metric)
    if value is None:
        return "—"
    ci = summary.get(f"{metric}_ci")
    if ci and ci[0] is not None and ci[0] == ci[0]:
        return f"{value:.1f} ± {(ci[1] - ci[0]) / 2:.1f}"
    return f"{value:.1f}"


# ---- Fig. 6 and Fig. 7, from results files -------------------------------------------------------
# Both figures take "points": finished or running runs, each with ``config`` (its results file's
# configuration), ``summary``, ``cases`` (its case rows) and ``finished`` — a :class:`Run` read from
# a results file, or analyses/tables.py's ``Point`` (which also reads the logs of runs still going).
# Only finished points are drawn; analyses/fig6.py and fig7.py list the others in their tables.

HEADS = ("selective", "all")
SPECIFICITY = ("RM", "DNM")  # Fig. 7's panels


@dataclass(frozen=True)
class Run:
    """A finished run as the figures read it: its results file's stem, configuration, summary and
    case rows."""

    name: str
    config: dict
    summary: dict
    cases: list
    finished: bool = True

    @classmethod
    def read(cls, path: Path | str) -> Run:
        """The run in results file ``path`` (``NAME.json``, as ``eval`` and ``sweep`` write it)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(Path(path).stem, data["config"], data["summary"], data["cases"])


@functools.lru_cache(maxsize=None)
def _preset(editor: str, model: str | None) -> tuple:
    import importlib
    from dataclasses import fields

    from drift.editors import HPARAMS
    from drift.editors.presets import editor_settings

    module, cls = HPARAMS[editor]
    hp = getattr(importlib.import_module(f"drift.editors.{module}"), cls)()
    try:
        found = editor_settings(editor, model) or {}
    except ValueError:  # an editor without a settings table: its defaults
        found = {}
    return tuple(({f.name: getattr(hp, f.name) for f in fields(hp)} | found).items())


def preset(editor: str, model: str | None) -> dict:
    """``editor``'s own hyper-parameters on ``model`` (a name or folder): its defaults overlaid by
    the row of :data:`drift.editors.presets.EDITOR_SETTINGS` for the model's family.

    >>> hp = preset("rome", "smollm2-135m")
    >>> hp["steps"], hp["lr"], hp["kl_factor"]
    (20, 0.5, 0.0625)
    """
    return dict(_preset(editor, model))


def steps_of(config: dict) -> int:
    """A run's optimisation steps: its ``steps`` option, else its editor's preset on its model.

    >>> steps_of({"editor": "rome", "steps": 80}), steps_of({"editor": "rome", "model": "smollm2-135m"})
    (80, 20)
    """
    return int(config.get("steps") or preset(config.get("editor") or "rome", config.get("model"))["steps"])


def success(summary: dict) -> float:
    """Fig. 7's edit success: the mean of EM and PM (NaN without either).

    >>> success({"EM": 90.0, "PM": 70.0}), success({"EM": 90.0})
    (80.0, 90.0)
    """
    vals = [summary[m] for m in ("EM", "PM") if m in summary]
    return sum(vals) / len(vals) if vals else math.nan


def _plainness(p) -> int:
    """How many knobs a run sets beyond its editor's preset (steps, each hyper-parameter)."""
    return bool(p.config.get("steps")) + len(p.config.get("hp") or {})


def _alone(points: Sequence, editor: str, steps: int | None = None):
    """``editor`` alone (no SADR, no hyper-parameter) at ``steps`` steps (``None``: at its preset,
    no ``steps`` given), the first of the plainest; ``None`` when there is none."""
    found = [
        p
        for p in points
        if p.config.get("editor") == editor
        and not p.config.get("sadr")
        and not p.config.get("hp")
        and (not p.config.get("steps") if steps is None else steps_of(p.config) == steps)
    ]
    return min(found, key=_plainness, default=None)


def fig6_lines(
    points: Sequence, editor: str = "rome", steps: int = 20
) -> dict[str, list[tuple[float, object]]]:
    """Fig. 6's lines: ``{"selective": [(γ, point)], "all": [...]}``, the runs of ``editor`` with
    SADR at ``steps`` steps and no other hyper-parameter, each line from ``editor`` alone at those
    steps (γ = 0); a line without a SADR run is left out."""
    out: dict[str, list] = {h: [] for h in HEADS}
    for p in points:
        c = p.config
        if c.get("editor") != editor or not c.get("sadr") or c.get("hp") or steps_of(c) != steps:
            continue
        out[c.get("sadr_heads") or "selective"].append((float(c["sadr"]), p))
    start = _alone(points, editor, steps)
    for row in out.values():
        if start is not None and row:
            row.append((0.0, start))
        row.sort(key=lambda t: t[0])
    return {k: v for k, v in out.items() if v}


def fig6(points: Sequence, editor: str = "rome", steps: int = 20):
    """Fig. 6: ES, RS and DNS against SADR's γ, one line per choice of heads (selective: the
    drifting heads; all: every head), over the finished ``points`` of :func:`fig6_lines`."""
    from drift import plots

    done = {h: {g: p for g, p in row if p.finished} for h, row in fig6_lines(points, editor, steps).items()}
    xs = sorted({g for row in done.values() for g in row})
    series = {
        f"{m}, {h} heads": [row[g].summary.get(m, math.nan) if g in row else math.nan for g in xs]
        for h, row in done.items()
        for m in ("ES", "RS", "DNS")
    }
    return plots.curves(
        xs, series, x_title="SADR's γ", y_title="score (%)", title="SADR on the drifting heads vs every head"
    )


def fig7_knob(p, editor: str = "rome") -> tuple[str, float] | None:
    """The line of Fig. 7 that ``p`` lies on and its setting there, or ``None`` (another editor,
    all heads, two knobs at once). ``editor`` alone at its preset lies on several lines; this
    gives its steps line."""
    c = p.config
    hp = c.get("hp") or {}
    if c.get("editor") != editor or (c.get("sadr_heads") or "selective") != "selective":
        return None
    name = editor.upper()
    if c.get("sadr"):
        return (f"SADR γ, {steps_of(c)} steps", float(c["sadr"])) if not hp else None
    if not hp:
        return f"{name} steps", float(steps_of(c))
    if len(hp) == 1 and not c.get("steps"):
        ((knob, value),) = hp.items()
        line = {"lr": f"{name} lr", "kl_factor": f"{name} ω"}.get(knob)
        return (line, float(value)) if line else None
    return None


def fig7_lines(points: Sequence, editor: str = "rome") -> dict[str, list[tuple[float, object]]]:
    """Fig. 7's lines, each knob's points in the order of its setting, one point a setting: a SADR
    line starts from ``editor`` alone at its steps (γ = 0), the learning-rate and ω lines pass
    through ``editor`` alone at its preset. SADR's lines first, then the knobs by name."""
    out: dict[str, list] = {}
    for p in points:
        k = fig7_knob(p, editor)
        if k is not None:
            out.setdefault(k[0], []).append((k[1], p))
    knobs = {f"{editor.upper()} lr": "lr", f"{editor.upper()} ω": "kl_factor"}
    for line, row in out.items():
        if line.startswith("SADR") and (base := _alone(points, editor, steps_of(row[0][1].config))):
            row.append((0.0, base))  # γ = 0: the editor alone at the same steps
        elif line in knobs and (base := _alone(points, editor)) is not None:
            row.append((float(preset(editor, base.config.get("model"))[knobs[line]]), base))
        row.sort(key=lambda t: (t[0], _plainness(t[1])))
        out[line] = [t for i, t in enumerate(row) if i == 0 or t[0] != row[i - 1][0]]
    return dict(sorted(out.items(), key=lambda kv: (not kv[0].startswith("SADR"), kv[0])))


def fig7(points: Sequence, editor: str = "rome", split: str = "validation"):
    """Fig. 7: edit success (:func:`success`) against RM and DNM, one panel each, one line per
    knob of :func:`fig7_lines` with at least two finished points; 1200 px wide. The title counts
    the cases of the largest finished point, as ``split`` cases ("" says "cases")."""
    from drift import plots

    panels: dict[str, dict] = {m: {} for m in SPECIFICITY}
    for name, row in fig7_lines(points, editor).items():
        done = [(v, p) for v, p in row if p.finished]
        if len(done) < 2:
            continue
        for m in SPECIFICITY:
            panels[m][name] = (
                [p.summary.get(m, math.nan) for _, p in done],
                [success(p.summary) for _, p in done],
                [f"{v:g}" for v, _ in done],
            )
    n = max((len(p.cases) for p in points if p.finished), default=0)
    cases = " ".join(filter(None, [str(n), split, "cases a point"]))
    fig = plots.paths(
        panels,
        x_titles={
            "RM": "RM: relation prompts, P(right answer) margin (%)",
            "DNM": "DNM: distracting neighbourhood (%)",
        },
        y_title="edit success: mean of EM and PM (%)",
        title=f"SADR's γ against {editor.upper()}'s own knobs ({cases})",
    )
    return fig.update_layout(width=1200)
