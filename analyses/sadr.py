"""SADR's tables and figures: the main paper's Table 3, Fig. 6 and Fig. 7 on one model.

    python analyses/sadr.py                                   # default model, built-in cases, ROME
    python analyses/sadr.py --editors rome,memit,pmet --data ../shared/data/counterfact-merged-dev.json --limit 200

- Table 3: None / editor / editor+SADR for each editor, ES PS NS RS DNS and Avg S with 95% CIs.
- Fig. 6: selective vs all heads over γ (first editor), RS, DNS and ES.
- Fig. 7: edit success (mean of EM and PM) against specificity (RM, DNM) for SADR's γ and for the
  editor's own knobs: optimisation steps, learning rate and ω.

Each configuration's summary is appended to ``OUT/sadr-runs.jsonl`` as it finishes, so an
interrupted run resumes where it stopped (``--restart`` starts over). Writes ``OUT/*.html``,
``OUT/*.png``, ``OUT/sadr.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import drift  # noqa: E402
from drift import plots  # noqa: E402
from drift.data import load_cases  # noqa: E402
from drift.editors import get_editor  # noqa: E402
from drift.editors.sadr import SADR  # noqa: E402
from drift.evaluate import evaluate  # noqa: E402
from drift.metrics import summarise  # noqa: E402
from drift.store import append_record, read_records  # noqa: E402

TABLE = ["ES", "PS", "NS", "RS", "DNS", "AvgS"]
# γ per model and editor: the paper's GPT-J values (App. C.2), and for the default model 1e-3,
# chosen on the built-in cases (γ = 1e-2 already stops most ROME edits there at 20 steps).
GAMMA = {"EleutherAI/gpt-j-6B": {"rome": 1e-2, "memit": 5e-3, "pmet": 8e-2},
         "smollm2-135m": {"rome": 1e-3, "memit": 1e-3, "pmet": 1e-3}}


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default="builtin")
    ap.add_argument("--limit", type=int, default=8, help="cases for Table 3 (default 8)")
    ap.add_argument("--sweep-limit", type=int, default=4, help="cases per point of Fig. 6 and Fig. 7 (default 4)")
    ap.add_argument("--editors", default="rome", help="comma-separated editors for Table 3 (default rome)")
    ap.add_argument("--gamma", type=float, default=None, help="SADR γ for Table 3 (default: the paper's per editor)")
    ap.add_argument("--steps", type=int, default=None, help="steps for the SADR runs (default: the editor's preset)")
    ap.add_argument("--gammas", default="1e-4,1e-3,1e-2", help="γ grid of Fig. 6/7")
    ap.add_argument("--knob-steps", default="7,20,40", help="ROME steps grid of Fig. 7")
    ap.add_argument("--knob-lr", default="0.05,0.2,0.5", help="ROME learning-rate grid of Fig. 7")
    ap.add_argument("--knob-kl", default="0.0625,1,4", help="ROME ω grid of Fig. 7")
    ap.add_argument("--no-figures", action="store_true", help="Table 3 only")
    ap.add_argument("--restart", action="store_true", help="ignore finished configurations in OUT/sadr-runs.jsonl")
    ap.add_argument("--out", default=str(ROOT / "figures" / "sadr"))
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


class Runs:
    """Configurations evaluated so far, keyed by what determines their result; saved as they end."""

    def __init__(self, path: Path, restart: bool):
        self.path = path
        if restart and path.exists():
            path.unlink()
        self.done: dict[str, dict] = {k: rec["summary"] for k, rec in read_records(path).items() if "summary" in rec}

    def get(self, model, cases, editor: str, label: str, seed: int, **overrides) -> dict:
        cfg = {"model": model.name, "cases": [c.case_id for c in cases], "editor": editor, "seed": seed,
               "overrides": {k: repr(v) for k, v in sorted(overrides.items())}}
        key = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]
        if key not in self.done:
            edit = get_editor(editor, **overrides) if editor != "none" else None
            rows = evaluate(model, cases, edit=edit, fluency=False, seed=seed, progress=False)
            summary = summarise([r["metrics"] for r in rows])
            self.done[key] = summary
            append_record(self.path, {"key": key, "label": label, "config": cfg, "summary": summary})
        return self.done[key]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _sadr(gamma: float, heads: str = "selective") -> dict:
    return {"extra_terms": (SADR(gamma, heads),)}


def main(argv=None) -> dict:
    args = parse(argv)
    t0 = time.time()
    out = Path(args.out)
    model = drift.load_model(args.model)
    cases = load_cases(args.data, limit=args.limit)
    sweep_cases = cases[: args.sweep_limit]
    runs = Runs(out / "sadr-runs.jsonl", args.restart)
    editors = [e for e in args.editors.split(",") if e]
    for e in editors:
        get_editor(e)  # unknown names fail here, before any work
    steps = {"steps": args.steps} if args.steps else {}

    plan: list[tuple[str, str, list, dict]] = [("None", "none", cases, {})]
    for e in editors:
        g = args.gamma if args.gamma is not None else GAMMA.get(model.name, {}).get(e, 1e-3)
        plan += [(e.upper(), e, cases, {}), (f"{e.upper()}+SADR (γ={g:g})", e, cases, _sadr(g) | steps)]
    first = editors[0]
    gammas = _floats(args.gammas)
    if not args.no_figures:
        plan += [(f"{first} γ={g:g} {h}", first, sweep_cases, _sadr(g, h) | steps) for h in ("selective", "all") for g in gammas]
        plan += [(f"{first} base", first, sweep_cases, {})]
        plan += [(f"{first} steps={s:g}", first, sweep_cases, {"steps": int(s)}) for s in _floats(args.knob_steps)]
        plan += [(f"{first} lr={v:g}", first, sweep_cases, {"lr": v}) for v in _floats(args.knob_lr)]
        plan += [(f"{first} ω={v:g}", first, sweep_cases, {"kl_factor": v}) for v in _floats(args.knob_kl)]
    results = {}
    for label, editor, cs, overrides in tqdm(plan, desc="configurations"):
        results[label] = runs.get(model, cs, editor, label, args.seed, **overrides)

    table_rows = [[label] + [_cell(results[label], m) for m in TABLE] for label, _, cs, _ in plan if cs is cases]
    written = []
    written += plots.save(plots.table(["method"] + TABLE, table_rows,
                                      title=f"Table 3 layout: {model.name}, {len(cases)} cases of {Path(args.data).name}"),
                          out / "table3", height=160 + 30 * len(table_rows))
    if not args.no_figures:
        lines = {}
        for h in ("selective", "all"):
            for m in ("RS", "DNS", "ES"):
                lines[f"{m} ({h} heads)"] = [results[f"{first} γ={g:g} {h}"][m] for g in gammas]
        base = results[f"{first} base"]
        written += plots.save(plots.curves(gammas, lines, log_x=True, x_title="γ", y_title="score (%)",
                                           references={f"{first} {m}": base[m] for m in ("RS", "DNS")},
                                           title=f"SADR on {first}: selective vs all heads ({len(sweep_cases)} cases)"),
                              out / "fig6_selective_vs_all")
        knobs = {"SADR γ": [f"{first} γ={g:g} selective" for g in gammas],
                 "steps": [f"{first} steps={s:g}" for s in _floats(args.knob_steps)],
                 "lr": [f"{first} lr={v:g}" for v in _floats(args.knob_lr)],
                 "ω": [f"{first} ω={v:g}" for v in _floats(args.knob_kl)]}
        panels = {}
        for spec in ("RM", "DNM"):
            panels[spec] = {k: ([results[l][spec] for l in ls], [_success(results[l]) for l in ls],
                                [l.split(" ", 1)[1].split(" ")[0] for l in ls]) for k, ls in knobs.items()}
        written += plots.save(plots.paths(panels, x_titles={"RM": "RM (relation, P of the right answer, %)",
                                                            "DNM": "DNM (distracting neighbourhood, %)"},
                                          y_title="edit success: mean of EM and PM (%)",
                                          title=f"Trade-off on {first}: SADR γ vs the editor's own knobs"),
                              out / "fig7_tradeoff", width=1200)
    result = {"config": vars(args) | {"model": model.name, "n_cases": len(cases)}, "results": results,
              "table3": {r[0]: dict(zip(TABLE, r[1:], strict=True)) for r in table_rows},
              "seconds": time.time() - t0}
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
