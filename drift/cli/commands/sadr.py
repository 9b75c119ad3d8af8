"""SADR's tables and figures: the main paper's Table 3, Fig. 6 and Fig. 7 on one model.

    python -m drift sadr                                   # default model, built-in cases, ROME
    python -m drift sadr --editors rome,memit,pmet \
        --data ../shared/data/counterfact-merged-dev.json --limit 200
    python -m drift sadr --gamma 1e-2,1e-1 ...             # one Table 3 row per γ (the paper's scale)

- Table 3: None / editor / editor+SADR for each editor, ES PS NS RS DNS and Avg S with 95% CIs.
- Fig. 6: selective vs all heads over γ (first editor), RS, DNS and ES.
- Fig. 7: edit success (mean of EM and PM) against specificity (RM, DNM) for SADR's γ and for the
  editor's own knobs: optimisation steps, learning rate and ω.

The grid is a sweep (drift.cli.sweep): every distinct configuration is one ``eval`` run, its results
file ``OUT/runs/NAME.json``, its cases cut into chunks of ``--chunk``. By default the chunks run in
this process; ``--ray`` runs them on a local Ray instance (one worker per core, or ``--per-gpu``
workers sharing each GPU with ``--device cuda``), ``--address`` on an existing Ray cluster. An
interrupted run resumes where it stopped, down to the last finished case; ``--restart`` redoes
runs whose configuration changed. Any run can be read with ``python -m drift compare``.
Writes ``OUT/*.html``, ``OUT/*.png``, ``OUT/sadr.json`` and prints the table.
(``python analyses/sadr.py`` is the same command.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from drift.cli import options as O
from drift.cli.script import parse_script

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
    the model's setting (:func:`drift.editors.sadr.paper_setting`; on the default SmolLM2-135M,
    ROME's is its validation grid's choice, γ 4e-2 at 20 steps).

    >>> setting("rome", "HuggingFaceTB/SmolLM2-135M-Instruct"), setting("rome", "EleutherAI/gpt-j-6b")
    (([0.04], 20), ([0.01], 80))
    """
    from drift.editors.sadr import paper_setting

    found = paper_setting(editor, model)
    return (list(gamma) if gamma else [found["gamma"]]), (steps or found["steps"])


def run(args: argparse.Namespace) -> dict:
    """SADR's tables and figures for ``args`` (from :func:`parse` or ``python -m drift sadr``)."""
    import warnings

    import drift

    warnings.filterwarnings("ignore", category=UserWarning)
    t0 = time.time()
    out = Path(args.out)
    model_name = args.model or drift.DEFAULT_MODEL
    grid = _grid(args)
    results, n_cases = _run_grid(args, grid, out / "runs")
    table_rows = [
        [label] + [_cell(results[label], m) for m in TABLE] for label, in_table, _ in grid if in_table
    ]
    written = _write_table(table_rows, out, f"{model_name}, {n_cases} cases of {Path(args.data).name}")
    if not args.no_figures:
        written += _write_figures(args, results, n_cases, out)
    result = {
        "config": vars(args) | {"model": model_name, "n_cases": n_cases} | _provenance(args),
        "results": results,
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


def _run_grid(args: argparse.Namespace, grid: list[tuple[str, bool, dict]], runs: Path) -> tuple[dict, int]:
    """Run ``grid`` as a sweep into ``runs`` (Table 3's runs on ``--limit`` cases, the figures' on
    ``--sweep-limit``; a configuration asked twice runs once): each label's summary, and the
    number of cases of the unedited run."""
    from drift.cli.sweep import RunSpec, execute, slug

    shared = {"data": args.data, "model": args.model, "seed": args.seed, "no_fluency": True}
    if args.dtype:
        shared["dtype"] = args.dtype
    names: dict[str, str] = {}  # label -> run name; configurations asked twice run once
    specs: dict[str, RunSpec] = {}
    for label, in_table, options in grid:
        options = shared | {"limit": args.limit if in_table else args.sweep_limit} | options
        same = next((n for n, r in specs.items() if r.options == options), None)
        names[label] = same or slug(label)
        specs.setdefault(names[label], RunSpec(names[label], options))
    finished = execute(
        list(specs.values()),
        runs,
        chunk=args.chunk,
        engine="ray" if args.ray else "local",
        address=args.address,
        workers=args.workers,
        device=args.device,
        per_gpu=args.per_gpu,
        restart=args.restart,
    )
    results = {label: finished[name]["summary"] for label, name in names.items()}
    return results, len(finished[names["None"]]["cases"])


def _write_table(table_rows: list[list[str]], out: Path, what: str) -> list[Path]:
    """Table 3 (``out/table3.*``) of ``what`` ("MODEL, N cases of FILE"); the files written."""
    from drift import plots

    table = plots.table(["method"] + TABLE, table_rows, title=f"Table 3 layout: {what}")
    return plots.save(table, out / "table3")


def _write_figures(args: argparse.Namespace, results: dict, n_cases: int, out: Path) -> list[Path]:
    """Fig. 6 (``out/fig6_selective_vs_all.*``) and Fig. 7 (``out/fig7_tradeoff.*``) of the first
    editor from the runs' ``results`` (label -> summary); the files written."""
    from drift import plots

    first, gammas = args.editors[0], args.gammas
    lines = {}
    for h in ("selective", "all"):
        for m in ("RS", "DNS", "ES"):
            lines[f"{m} ({h} heads)"] = [results[f"{first} γ={g:g} {h}"][m] for g in gammas]
    base = results[f"{first} base"]
    written = plots.save(
        plots.curves(
            gammas,
            lines,
            log_x=True,
            x_title="γ",
            y_title="score (%)",
            references={f"{first} {m}": base[m] for m in ("RS", "DNS")},
            title=f"SADR on {first}: selective vs all heads ({min(args.sweep_limit, n_cases)} cases)",
        ),
        out / "fig6_selective_vs_all",
    )
    knobs = {
        "SADR γ": [f"{first} γ={g:g} selective" for g in gammas],
        "steps": [f"{first} steps={s:g}" for s in args.knob_steps],
        "lr": [f"{first} lr={v:g}" for v in args.knob_lr],
        "ω": [f"{first} ω={v:g}" for v in args.knob_kl],
    }
    panels = {}
    for spec in ("RM", "DNM"):
        panels[spec] = {
            k: (
                [results[l][spec] for l in ls],
                [_success(results[l]) for l in ls],
                [l.split(" ", 1)[1].split(" ")[0] for l in ls],
            )
            for k, ls in knobs.items()
        }
    written += plots.save(
        plots.paths(
            panels,
            x_titles={
                "RM": "RM (relation, P of the right answer, %)",
                "DNM": "DNM (distracting neighbourhood, %)",
            },
            y_title="edit success: mean of EM and PM (%)",
            title=f"Trade-off on {first}: SADR γ vs the editor's own knobs",
        ),
        out / "fig7_tradeoff",
        width=1200,
    )
    return written


def _cell(summary: dict, metric: str) -> str:
    value = summary.get(metric)
    if value is None:
        return "—"
    ci = summary.get(f"{metric}_ci")
    if ci and ci[0] is not None and ci[0] == ci[0]:
        return f"{value:.1f} ± {(ci[1] - ci[0]) / 2:.1f}"
    return f"{value:.1f}"


def _success(summary: dict) -> float:
    vals = [summary[m] for m in ("EM", "PM") if m in summary]
    return sum(vals) / len(vals) if vals else float("nan")
