"""SADR's tables and figures: the main paper's Table 3, Fig. 6 and Fig. 7 on one model.

    python analyses/sadr.py                                   # default model, built-in cases, ROME
    python analyses/sadr.py --editors rome,memit,pmet \
        --data ../shared/data/counterfact-merged-dev.json --limit 200
    python analyses/sadr.py --gamma 1e-2,1e-1 ...             # one Table 3 row per γ (the paper's scale)

- Table 3: None / editor / editor+SADR for each editor, ES PS NS RS DNS and Avg S with 95% CIs.
- Fig. 6: selective vs all heads over γ (first editor), RS, DNS and ES.
- Fig. 7: edit success (mean of EM and PM) against specificity (RM, DNM) for SADR's γ and for the
  editor's own knobs: optimisation steps, learning rate and ω.

The grid is a sweep (drift.sweep): every distinct configuration is one ``eval`` run, its results
file ``OUT/runs/NAME.json``, its cases cut into chunks of ``--chunk``. By default the chunks run in
this process; ``--ray`` runs them on a local Ray instance (one worker per core, or ``--per-gpu``
workers sharing each GPU with ``--device cuda``), ``--address`` on an existing Ray cluster. An
interrupted run resumes where it stopped, down to the last finished case; ``--restart`` redoes
runs whose configuration changed. Any run can be read with ``python -m drift compare``.
Writes ``OUT/*.html``, ``OUT/*.png``, ``OUT/sadr.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import drift  # noqa: E402
from drift.editors import get_editor  # noqa: E402
from drift.editors.sadr import paper_setting  # noqa: E402
from drift.sweep import RunSpec, execute, slug  # noqa: E402

TABLE = ["ES", "PS", "NS", "RS", "DNS", "AvgS"]


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default="builtin")
    ap.add_argument("--limit", type=int, default=8, help="cases for Table 3 (default 8)")
    ap.add_argument(
        "--sweep-limit", type=int, default=4, help="cases per point of Fig. 6 and Fig. 7 (default 4)"
    )
    ap.add_argument("--editors", default="rome", help="comma-separated editors for Table 3 (default rome)")
    ap.add_argument(
        "--gamma",
        default=None,
        metavar="G[,G...]",
        help="SADR γ for Table 3, one row per value (default: the paper's per editor, "
        "drift.editors.sadr.PAPER_SETTINGS)",
    )
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps for the SADR runs (default: the paper's per editor, ROME 80, MEMIT 20, PMET 40)",
    )
    ap.add_argument("--gammas", default="1e-3,1e-2,1e-1", help="γ grid of Fig. 6/7")
    ap.add_argument("--knob-steps", default="20,40,80", help="ROME steps grid of Fig. 7")
    ap.add_argument("--knob-lr", default="0.05,0.2,0.5", help="ROME learning-rate grid of Fig. 7")
    ap.add_argument("--knob-kl", default="0.0625,1,4", help="ROME ω grid of Fig. 7")
    ap.add_argument("--no-figures", action="store_true", help="Table 3 only")
    ap.add_argument("--restart", action="store_true", help="redo runs whose configuration changed")
    ap.add_argument("--out", default=str(ROOT / "figures" / "sadr"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--device", default=None, help="torch device, e.g. cuda (default: cuda when available, else cpu)"
    )
    ap.add_argument("--chunk", type=int, default=10, help="cases per task (default 10)")
    ap.add_argument("--ray", action="store_true", help="run the chunks on Ray workers")
    ap.add_argument("--address", default=None, help="with --ray: an existing Ray cluster")
    ap.add_argument("--workers", type=int, default=None, help="with --ray: local workers (default: cores)")
    ap.add_argument(
        "--per-gpu", type=int, default=4, help="with --ray --device cuda: workers per GPU (default 4)"
    )
    return ap.parse_args(argv)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _sadr(gamma: float, heads: str = "selective") -> dict:
    return {"sadr": gamma, "sadr_heads": heads}


def main(argv=None) -> dict:
    args = parse(argv)
    t0 = time.time()
    out = Path(args.out)
    editors = [e for e in args.editors.split(",") if e]
    for e in editors:
        get_editor(e)  # unknown names fail here, before any work
    model_name = args.model or drift.DEFAULT_MODEL

    def steps(e: str) -> dict:
        return {"steps": args.steps or paper_setting(e, args.model)["steps"]}

    # (label, editor, in Table 3, eval options): Table 3 on --limit cases, the figures on --sweep-limit
    plan: list[tuple[str, bool, dict]] = [("None", True, {"editor": "none"})]
    for e in editors:
        gs = _floats(args.gamma) if args.gamma else [paper_setting(e, args.model)["gamma"]]
        plan += [(e.upper(), True, {"editor": e})] + [
            (f"{e.upper()}+SADR (γ={g:g})", True, {"editor": e} | _sadr(g) | steps(e)) for g in gs
        ]
    first = editors[0]
    steps = steps(first)
    gammas = _floats(args.gammas)
    if not args.no_figures:
        plan += [
            (f"{first} γ={g:g} {h}", False, {"editor": first} | _sadr(g, h) | steps)
            for h in ("selective", "all")
            for g in gammas
        ]
        plan += [(f"{first} base", False, {"editor": first})]
        plan += [
            (f"{first} steps={s:g}", False, {"editor": first, "steps": int(s)})
            for s in _floats(args.knob_steps)
        ]
        plan += [
            (f"{first} lr={v:g}", False, {"editor": first, "hp": {"lr": v}}) for v in _floats(args.knob_lr)
        ]
        plan += [
            (f"{first} ω={v:g}", False, {"editor": first, "hp": {"kl_factor": v}})
            for v in _floats(args.knob_kl)
        ]
    shared = {"data": args.data, "model": args.model, "seed": args.seed, "no_fluency": True}
    names: dict[str, str] = {}  # label -> run name; configurations asked twice run once
    specs: dict[str, RunSpec] = {}
    for label, in_table, options in plan:
        options = shared | {"limit": args.limit if in_table else args.sweep_limit} | options
        same = next((n for n, r in specs.items() if r.options == options), None)
        names[label] = same or slug(label)
        specs.setdefault(names[label], RunSpec(names[label], options))
    finished = execute(
        list(specs.values()),
        out / "runs",
        chunk=args.chunk,
        engine="ray" if args.ray else "local",
        address=args.address,
        workers=args.workers,
        device=args.device,
        per_gpu=args.per_gpu,
        restart=args.restart,
    )
    results = {label: finished[name]["summary"] for label, name in names.items()}
    n_cases = len(finished[names["None"]]["cases"])
    from drift import plots

    table_rows = [
        [label] + [_cell(results[label], m) for m in TABLE] for label, in_table, _ in plan if in_table
    ]
    written = []
    written += plots.save(
        plots.table(
            ["method"] + TABLE,
            table_rows,
            title=f"Table 3 layout: {model_name}, {n_cases} cases of {Path(args.data).name}",
        ),
        out / "table3",
    )
    if not args.no_figures:
        lines = {}
        for h in ("selective", "all"):
            for m in ("RS", "DNS", "ES"):
                lines[f"{m} ({h} heads)"] = [results[f"{first} γ={g:g} {h}"][m] for g in gammas]
        base = results[f"{first} base"]
        written += plots.save(
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
            "steps": [f"{first} steps={s:g}" for s in _floats(args.knob_steps)],
            "lr": [f"{first} lr={v:g}" for v in _floats(args.knob_lr)],
            "ω": [f"{first} ω={v:g}" for v in _floats(args.knob_kl)],
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
    result = {
        "config": vars(args) | {"model": model_name, "n_cases": n_cases},
        "results": results,
        "table3": {r[0]: dict(zip(TABLE, r[1:], strict=True)) for r in table_rows},
        "seconds": time.time() - t0,
    }
    (out / "sadr.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"{'method':<28}" + "".join(f"{m:>16}" for m in TABLE))
    for r in table_rows:
        print(f"{r[0]:<28}" + "".join(f"{c:>16}" for c in r[1:]))
    print(f"wrote {len(written)} figure files and {out / 'sadr.json'} in {result['seconds']:.0f} s")
    return result


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


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=UserWarning)
    main()
