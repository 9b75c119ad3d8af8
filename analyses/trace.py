"""Where and why an edit fails on unrelated prompts: the main paper's §3 figures and tables.

    python analyses/trace.py                       # default model, built-in cases, ROME
    python analyses/trace.py --data ../shared/data/counterfact-merged-dev.json --limit 100 --trace-cases 0

For each case the editor's edit is computed (never left in the model), then on its distracting
neighbourhood (DNS) and relation (RS) prompts:

- attention drift and its factors (``drift.attention_drift``) on every prompt;
- attention-weight patching with windows of ``--attn-window`` layers (Fig. 5) on the first prompt
  of each task; the whole window where it restores P(o_true) most defines the "significant layers"
  over which drift is summed for the correlations (Fig. 4, Tables 2 and 4), unless
  ``--drift-layers LO,HI`` names them (``drift_rows`` in the JSON also keep each prompt's KL per
  layer, so any other range can be summed afterwards);
- on the first ``--trace-cases`` cases, contaminating substitution for each module kind with a
  window of ``--window`` layers (Fig. 3/9) and single-score patching (Fig. 10).

Writes ``OUT/*.html`` and ``OUT/*.png`` (figures), ``OUT/trace.json`` (every number) and prints a
summary. Each case's results are saved as it finishes: rerunning an interrupted command resumes
(``--restart`` starts over).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import drift  # noqa: E402
from drift import plots, tracing  # noqa: E402
from drift.attention_drift import factors, measure  # noqa: E402
from drift.correlate import pearson  # noqa: E402
from drift.data import load_cases  # noqa: E402
from drift.editors import get_compute  # noqa: E402
from drift.editors.target import EditDiverged  # noqa: E402
from drift.metrics import SCORINGS  # noqa: E402
from drift.runs import CaseFiles  # noqa: E402

TASKS = {"DNS": tracing.distracting_prompt, "RS": tracing.relation_prompt}
TABLE2 = ["max_subject_gain", "max_other_shift", "sum_subject_gain"]
TABLE4 = ["kl_drift", "hidden_norm", "hidden_l2", "hidden_cos"]
TARGETS = {0: "P(o_true)", 1: "P(o_edit)"}  # o_true: the prompt's right answer


def _span(text: str) -> tuple[int, int]:
    """``"LO,HI"`` as two layers, first <= last."""
    try:
        lo, hi = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected first,last layer (e.g. 21,26), got {text!r}") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= first <= last")
    return lo, hi


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model name or folder (default: the offline SmolLM2-135M)")
    ap.add_argument("--data", default="builtin", help="'builtin' or a CounterFact-format JSON file")
    ap.add_argument("--limit", type=int, default=10, help="cases to edit and measure (default 10)")
    ap.add_argument("--editor", default="rome", help="rome (default), rome-awd, memit or pmet")
    ap.add_argument("--window", type=int, default=6, help="layers per contaminating substitution (default 6)")
    ap.add_argument(
        "--attn-window", type=int, default=10, help="layers per attention/score patch (default 10)"
    )
    ap.add_argument(
        "--trace-cases", type=int, default=1, help="cases to run the per-token sweeps on (default 1)"
    )
    ap.add_argument(
        "--kinds", default="mlp,attn,layer", help="module kinds to substitute (default mlp,attn,layer)"
    )
    ap.add_argument(
        "--prompts", type=int, default=4, help="prompts per task and case for the drift (default 4)"
    )
    ap.add_argument(
        "--scoring",
        default="mean",
        choices=SCORINGS,
        help="P(o_edit) and P(right) of a multi-token answer for the drift correlations: exp of the mean "
        "log-probability per token (default, the reference's) or the product of the tokens' probabilities",
    )
    ap.add_argument("--batch-size", type=int, default=48, help="patch states per forward pass (default 48)")
    ap.add_argument(
        "--out", default=str(ROOT / "figures" / "trace"), help="output folder (default figures/trace)"
    )
    ap.add_argument(
        "--device", default=None, help="torch device, e.g. cuda (default: cuda when available, else cpu)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--drift-layers",
        type=_span,
        default=None,
        help="first,last layer over which drift is summed for the correlations "
        "(default: the whole --attn-window window whose attention patch helps most)",
    )
    ap.add_argument("--restart", action="store_true", help="ignore the cases finished by an interrupted run")
    return ap.parse_args(argv)


def one_case(model, case, compute, args, trace_this: bool) -> dict:
    """Edit one case and run every measurement on it (the edit never stays in the model)."""
    kinds = [k for k in args.kinds.split(",") if k]
    res = {
        "drifts": {t: [] for t in TASKS},
        "attention": {},
        "substitution": {t: {} for t in TASKS},
        "scores": {},
        "skipped": [],
    }
    try:
        edit = compute(model, case)
    except (ValueError, EditDiverged) as e:
        res["skipped"].append(f"case {case.case_id}: {e}")
        return res
    kw = {"batch_size": args.batch_size}
    for task, make in TASKS.items():
        probes = case.distracting if task == "DNS" else case.relation
        prompts = []
        for j in range(min(args.prompts, len(probes or ()))):
            try:
                prompts.append(make(model, case, j))
            except ValueError as e:  # e.g. a relation prompt naming the subject differently
                res["skipped"].append(f"case {case.case_id} {task} prompt {j}: {e}")
        if not prompts:
            continue
        res["drifts"][task] = [
            (case.case_id, measure(model, edit, p, case.o_edit, args.scoring)) for p in prompts
        ]
        if prompts[0].read[0] == prompts[0].read[1]:
            continue  # the right answer and o_edit share their first token: the sweeps cannot tell them apart
        res["attention"][task] = tracing.attention_patching(model, edit, prompts[0], args.attn_window, **kw)
        if trace_this:
            for kind in kinds:
                res["substitution"][task][kind] = tracing.contaminating_substitution(
                    model, edit, prompts[0], kind, args.window, **kw
                )
            res["scores"][task] = tracing.score_patching(model, edit, prompts[0], args.attn_window, **kw)
    return res


def collect(model, cases, args) -> dict:
    """Every case's results, each saved as it finishes (:class:`drift.runs.CaseFiles`, under
    ``OUT/.partial-KEY/``) so that an interrupted run resumes without redoing finished cases
    (``--restart`` starts over)."""
    compute = get_compute(args.editor)
    cfg = {
        k: getattr(args, k)
        for k in ("editor", "window", "attn_window", "kinds", "prompts", "trace_cases", "seed", "scoring")
    }
    cfg |= {"model": model.name, "data": str(args.data)}
    files = CaseFiles(args.out, cfg, restart=args.restart)
    kinds = [k for k in args.kinds.split(",") if k]
    out = {
        "drifts": {t: [] for t in TASKS},
        "attention": {t: [] for t in TASKS},
        "substitution": {t: {k: [] for k in kinds} for t in TASKS},
        "scores": {t: [] for t in TASKS},
        "skipped": [],
    }
    for i, case in enumerate(tqdm(cases, desc=f"{args.editor} edits and drift")):
        res = files.load(case.case_id)
        if res is None:
            res = one_case(model, case, compute, args, trace_this=i < args.trace_cases)
            files.save(case.case_id, res)
        for t in TASKS:
            out["drifts"][t] += res["drifts"][t]
            if t in res["attention"]:
                out["attention"][t].append(res["attention"][t])
            if t in res["scores"]:
                out["scores"][t].append(res["scores"][t])
            for k, v in res["substitution"][t].items():
                out["substitution"][t][k].append(v)
        out["skipped"] += res["skipped"]
    return out


def best_window(attention: dict, full: int | None = None) -> tuple[int, dict]:
    """The start layer whose attention patch raises P(o_true) most (mean over tasks), among the
    first ``full`` starts (the windows of all k layers; all starts for None), and the curves."""
    curves, gains = {}, []
    for task, sweeps in attention.items():
        if not sweeps:
            continue
        probs = torch.stack([s.probs for s in sweeps]).mean(0)  # [layers, 2]
        edited = torch.stack([s.edited for s in sweeps]).mean(0)
        vanilla = torch.stack([s.vanilla for s in sweeps]).mean(0)
        curves[task] = {"probs": probs, "edited": edited, "vanilla": vanilla, "n": len(sweeps)}
        gains.append(probs[:, 0] - edited[0])
    start = int(torch.stack(gains).mean(0)[:full].argmax()) if gains else 0
    return start, curves


def _grid(sweeps: list) -> tuple[torch.Tensor, list[str]]:
    """Effects ``[layers, columns, 2]``: the tokens of a single prompt, else aligned groups."""
    if len(sweeps) == 1:
        return sweeps[0].effect, sweeps[0].prompt.labels
    return tracing.align(sweeps)


def figures(
    raw: dict, curves: dict, layers: range, corr: dict, rows: dict, args, n_layers: int
) -> list[Path]:
    out = Path(args.out)
    written: list[Path] = []
    for task in TASKS:
        subs = {k: v for k, v in raw["substitution"][task].items() if v}
        if subs:
            for idx, target in TARGETS.items():
                panels, labels = {}, None
                for kind, sweeps in subs.items():
                    grid, labels = _grid(sweeps)
                    panels[kind] = grid[..., idx]
                n = len(next(iter(subs.values())))
                fig = plots.heatmaps(
                    panels,
                    labels,
                    colorbar=f"Δ{target}",
                    title=f"Contaminating substitution, {task}: effect on {target} "
                    f"(vanilla model with the edited module outputs, window {args.window}, {n} case(s))",
                )
                written += plots.save(
                    fig,
                    out / f"fig3_substitution_{task.lower()}_{'p_true' if idx == 0 else 'p_edit'}",
                    width=1500,
                    height=600,
                )
        if raw["scores"][task]:
            grid, labels = tracing.align(raw["scores"][task])  # token groups: a handful of lines
            lines = {lab: grid[:, i, 0].tolist() for i, lab in enumerate(labels)}
            fig = plots.curves(
                range(n_layers),
                lines,
                x_title="centre layer of the patched window",
                y_title=f"Δ{TARGETS[0]}",
                title=f"Edited model with the vanilla score from the last token to one token, {task} "
                f"(window {args.attn_window}, {len(raw['scores'][task])} case(s), tokens grouped)",
            )
            written += plots.save(fig, out / f"fig10_score_patching_{task.lower()}")
        if task in curves:
            # full windows only, each at its centre layer, as the paper's Fig. 5 is drawn
            c, k = curves[task], min(args.attn_window, n_layers)
            full = n_layers - k + 1
            lines = {TARGETS[i]: c["probs"][:full, i].tolist() for i in TARGETS}
            refs = {f"edited {TARGETS[i]}": float(c["edited"][i]) for i in TARGETS}
            refs |= {f"vanilla {TARGETS[i]}": float(c["vanilla"][i]) for i in TARGETS}
            fig = plots.curves(
                [first + k // 2 for first in range(full)],
                lines,
                references=refs,
                x_title=f"centre layer of the {k} patched layers",
                y_title="probability",
                title=f"Edited model with vanilla attention weights in {args.attn_window} layers, "
                f"{task} ({c['n']} cases)",
            )
            written += plots.save(fig, out / f"fig5_attention_patching_{task.lower()}")
    panels = {
        t: (
            [r["kl_drift"] for r in rows[t]],
            [r["p_edit"] for r in rows[t]],
            corr[t]["kl_drift"].rho,
            corr[t]["kl_drift"].p,
        )
        for t in TASKS
        if rows[t]
    }
    if panels:
        span = f"{layers.start}-{layers.stop - 1}"
        fig = plots.scatter(
            panels,
            x_title=f"Σ KL drift, layers {span}",
            y_title="P(o_edit)",
            title="Attention drift vs the edited object's probability",
        )
        written += plots.save(fig, out / "fig4_drift_vs_p_edit")
    for name, facs in (("table2", TABLE2), ("table4", TABLE4)):
        body = [
            [
                t,
                f,
                f"{corr[t][f].rho:.3f}",
                f"{corr[t][f].p:.1e}",
                corr[t][f].n,
                f"{corr[t][f].rho_cases:.3f}",
                f"[{corr[t][f].ci_cases[0]:.2f}, {corr[t][f].ci_cases[1]:.2f}]",
                f"{corr[t][f].p_cases:.1e}",
                corr[t][f].cases,
            ]
            for t in TASKS
            if rows[t]
            for f in facs
        ]
        fig = plots.table(
            ["task", "factor", "ρ (prompts)", "p", "prompts", "ρ (case means)", "95% CI", "p", "cases"],
            body,
            title=f"{'Table 2' if name == 'table2' else 'Table 4'}: correlation with P(o_edit)",
        )
        written += plots.save(fig, out / name)  # the table sizes itself to its rows and text
    return written


def _fmt(x, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _num(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def main(argv=None) -> dict:
    args = parse(argv)
    t0 = time.time()
    torch.manual_seed(args.seed)
    model = drift.load_model(args.model, device=args.device)
    cases = [c for c in load_cases(args.data, limit=args.limit) if c.neighborhood or c.relation]
    if not cases:
        raise SystemExit(f"no case in {args.data} has neighbourhood or relation prompts")
    L = model.cfg.n_layers
    if args.drift_layers and args.drift_layers[1] >= L:  # before any case is edited
        raise SystemExit(f"--drift-layers: layer {args.drift_layers[1]} is past the model's last, {L - 1}")
    raw = collect(model, cases, args)
    start, curves = best_window(raw["attention"], L - min(args.attn_window, L) + 1)
    layers = tracing.starting(start, args.attn_window, L)
    if args.drift_layers:
        layers = range(args.drift_layers[0], args.drift_layers[1] + 1)
    rows = {
        t: [
            {
                "case_id": cid,
                "p_edit": d.p_edit,
                "p_true": d.p_true,
                **factors(d, layers),
                "kl_per_layer": d.kl.sum(-1).tolist(),  # [layers], heads summed
            }
            for cid, d in ds
        ]
        for t, ds in raw["drifts"].items()
    }
    corr = {t: pearson(rows[t], TABLE4[:1] + TABLE2 + TABLE4[1:]) for t in TASKS}
    written = figures(raw, curves, layers, corr, rows, args, L)
    result = {
        "config": vars(args) | {"model": model.name, "n_cases": len(cases)},
        "patching_window": [start, min(L, start + args.attn_window) - 1],
        "significant_layers": [layers.start, layers.stop - 1],  # where drift is summed
        "correlations": {
            t: {
                f: {
                    "rho": _num(c.rho),
                    "p": _num(c.p),
                    "n": c.n,
                    "cases": c.cases,
                    "rho_cases": _num(c.rho_cases),
                    "p_cases": _num(c.p_cases),
                    "ci_cases": [_num(x) for x in c.ci_cases],
                }
                for f, c in cs.items()
            }
            for t, cs in corr.items()
        },
        "attention_patching": {t: {k: _num(v) for k, v in c.items()} for t, c in curves.items()},
        "substitution": {
            t: {
                k: [
                    {
                        "case": s.prompt.text,
                        "effect": _num(s.effect),
                        "tokens": s.prompt.labels,
                        "vanilla": _num(s.vanilla),
                        "edited": _num(s.edited),
                    }
                    for s in v
                ]
                for k, v in ks.items()
            }
            for t, ks in raw["substitution"].items()
        },
        "score_patching": {
            t: [{"case": s.prompt.text, "effect": _num(s.effect), "tokens": s.prompt.labels} for s in v]
            for t, v in raw["scores"].items()
        },
        "drift_rows": rows,
        "skipped": raw["skipped"],
        "seconds": time.time() - t0,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "trace.json").write_text(json.dumps(result, indent=1))
    print(summary(result, curves, args))
    print(f"wrote {len(written)} figure files and {out / 'trace.json'} in {result['seconds']:.0f} s")
    return result


def summary(result: dict, curves: dict, args) -> str:
    lo, hi = result["patching_window"]
    lines = [
        f"{args.editor} on {result['config']['n_cases']} cases of {args.data}; "
        f"attention patching helps most in layers {lo}-{hi}"
    ]
    if result["significant_layers"] != [lo, hi]:
        first, last = result["significant_layers"]
        lines.append(f"  drift summed over layers {first}-{last} (--drift-layers)")
    for t, c in curves.items():
        p = c["probs"][lo]
        lines.append(
            f"  {t}: P(o_true) vanilla {float(c['vanilla'][0]):.3f}, edited {float(c['edited'][0]):.3f}, "
            f"patched {float(p[0]):.3f}; P(o_edit) vanilla {float(c['vanilla'][1]):.3f}, "
            f"edited {float(c['edited'][1]):.3f}, patched {float(p[1]):.3f}"
        )
    for t, cs in result["correlations"].items():
        parts = [
            f"{f} ρ={v['rho']:.2f} (p={v['p']:.1e}; case means {_fmt(v['rho_cases'], '.2f')}, "
            f"p={_fmt(v['p_cases'], '.1e')})"
            for f, v in cs.items()
            if v["rho"] is not None
        ]
        first = next(iter(cs.values()))
        lines.append(f"  {t} ({first['n']} prompts, {first['cases']} cases): " + ", ".join(parts))
    if result["skipped"]:
        lines.append(f"  skipped {len(result['skipped'])}: " + "; ".join(result["skipped"][:3]))
    return "\n".join(lines)


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=UserWarning)
    main()
