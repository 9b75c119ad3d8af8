"""Where and why an edit fails on unrelated prompts: the main paper's §3 figures and tables.

    python -m drift trace                          # default model, built-in cases, ROME
    python -m drift trace --data ../shared/data/counterfact-merged-dev.json --limit 100 --trace-cases 0

(``python analyses/trace.py`` is the same command.)

For each case the editor's edit is computed (never left in the model), then on its distracting
neighbourhood (DNS) and relation (RS) prompts:

- attention drift and its factors (``drift.interp.attention_drift``) on every prompt;
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
import math
import time
from pathlib import Path

from drift.cli import options as O
from drift.cli.script import parse_script

TASKS = ("DNS", "RS")
TABLE2 = ["max_subject_gain", "max_other_shift", "sum_subject_gain"]
TABLE4 = ["kl_drift", "hidden_norm", "hidden_l2", "hidden_cos"]
TARGETS = {0: "P(o_true)", 1: "P(o_edit)"}  # o_true: the prompt's right answer
KINDS = ("mlp", "attn", "layer")
_span = O.layer_span  # the type of --drift-layers


def kinds(text: str) -> list[str]:
    """``--kinds``: module kinds, each one of mlp, attn, layer."""
    names = [k.strip() for k in str(text).split(",") if k.strip()]
    bad = [k for k in names if k not in KINDS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected some of {','.join(KINDS)}, got {text!r}")
    return names


def add_options(p: argparse.ArgumentParser) -> None:
    """``trace``'s options."""
    O.add_data(p, limit=10)
    O.add_model(p)
    O.add_editor(p, default="rome", choices=O.EDITED)
    O.add_scoring(p, pool=False)
    O.add_run(p, batch_size=48)
    O.add_output(
        p,
        kind="folder",
        default="figures/trace",
    )
    g = p.add_argument_group("trace")
    g.add_argument(
        "--window", type=O.positive_int, default=6, help="layers per contaminating substitution (default 6)"
    )
    g.add_argument(
        "--attn-window",
        type=O.positive_int,
        default=10,
        help="layers per attention/score patch (default 10)",
    )
    g.add_argument(
        "--trace-cases", type=int, default=1, help="cases to run the per-token patch scans on (default 1)"
    )
    g.add_argument(
        "--kinds",
        type=kinds,
        default="mlp,attn,layer",
        help="module kinds to substitute (default mlp,attn,layer)",
    )
    g.add_argument(
        "--prompts",
        type=O.positive_int,
        default=4,
        help="prompts per task and case for the drift (default 4)",
    )
    g.add_argument(
        "--drift-layers",
        type=O.layer_span,
        default=None,
        help="first,last layer over which drift is summed for the correlations "
        "(default: the whole --attn-window window whose attention patch helps most)",
    )


def parse(argv=None) -> argparse.Namespace:
    """``analyses/trace.py``'s options: this command's, and ``-v``/``-q``."""
    return parse_script("analyses/trace.py", __doc__, add_options, argv)


def _prompt_makers():
    from drift.interp import tracing

    return {"DNS": tracing.distracting_prompt, "RS": tracing.relation_prompt}


def one_case(model, case, compute, args, trace_this: bool) -> dict:
    """Edit one case and run every measurement on it (the edit never stays in the model)."""
    from drift.editors.target import EditDiverged
    from drift.interp import tracing
    from drift.interp.attention_drift import measure

    kinds = args.kinds
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
    for task, make in _prompt_makers().items():
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
            continue  # the right answer and o_edit share their first token: a scan cannot tell them apart
        res["attention"][task] = tracing.attention_patching(model, edit, prompts[0], args.attn_window, **kw)
        if trace_this:
            for kind in kinds:
                res["substitution"][task][kind] = tracing.contaminating_substitution(
                    model, edit, prompts[0], kind, args.window, **kw
                )
            res["scores"][task] = tracing.score_patching(model, edit, prompts[0], args.attn_window, **kw)
    return res


def collect(model, cases, args) -> dict:
    """Every case's results, each saved as it finishes (:meth:`drift.cli.runs.RecordLog.save`: a
    row in ``OUT/.partial-KEY.jsonl``, a file in ``OUT/.partial-KEY/``) so that an interrupted run
    resumes without redoing finished cases (``--restart`` sets them aside and starts over)."""
    from tqdm.auto import tqdm

    from drift.cli.jobs import resolve_editor
    from drift.cli.runs import RecordLog
    from drift.cli.spec import run_config, run_key
    from drift.editors import get_compute

    o = O.Options.of(args, "trace")
    editor, overrides = resolve_editor(o)
    compute = get_compute(editor.editor, drop_rate=editor.dr, seed=o.run.seed, **overrides)
    own = ("window", "attn_window", "kinds", "prompts", "trace_cases")
    cfg = run_config(o, editor, kind="trace", **{k: getattr(args, k) for k in own})
    files = RecordLog(Path(args.out) / f".partial-{run_key(cfg)}.jsonl", cfg, restart=args.restart).open()
    kinds = args.kinds
    out = {
        "drifts": {t: [] for t in TASKS},
        "attention": {t: [] for t in TASKS},
        "substitution": {t: {k: [] for k in kinds} for t in TASKS},
        "scores": {t: [] for t in TASKS},
        "skipped": [],
    }
    for i, case in enumerate(tqdm(cases, desc=f"{args.editor} edits and drift", disable=not o.progress)):
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


def _grid(scans: list) -> tuple:
    """Effects ``[layers, columns, 2]``: the tokens of a single prompt, else aligned groups."""
    from drift.interp import tracing

    if len(scans) == 1:
        return scans[0].effect, scans[0].prompt.labels
    return tracing.align(scans)


def figures(
    raw: dict, curves: dict, layers: range, corr: dict, rows: dict, args, n_layers: int
) -> list[Path]:
    """Every figure of the trace, written to ``OUT``: per task Fig. 3 (substitution), Fig. 10
    (score patching) and Fig. 5 (attention patching); Fig. 4 (drift against P(o_edit)); Tables 2
    and 4 (correlations)."""
    from drift import plots

    out = Path(args.out)
    written: list[Path] = []
    for task in TASKS:
        written += _substitution_figures(plots, raw["substitution"][task], task, args.window, out)
        if raw["scores"][task]:
            written += _score_figure(plots, raw["scores"][task], task, args.attn_window, n_layers, out)
        if task in curves:
            written += _attention_figure(plots, curves[task], task, args.attn_window, out)
    written += _drift_figure(plots, layers, corr, rows, out)
    for name, facs in (("table2", TABLE2), ("table4", TABLE4)):
        header, body = correlation_table(corr, facs, [t for t in TASKS if rows[t]])
        fig = plots.table(
            header,
            body,
            title=f"{'Table 2' if name == 'table2' else 'Table 4'}: correlation with P(o_edit) "
            f"(n/a: undefined, under 3 prompts or 4 cases or a constant column)",
        )
        written += plots.save(fig, out / name)  # the table sizes itself to its rows and text
    return written


def _substitution_figures(plots, substitution: dict, task: str, window: int, out: Path) -> list[Path]:
    """Fig. 3/9 of one task: for P(o_true) and for P(o_edit), a heatmap per module kind of the
    contaminating substitution's effect (nothing when no kind was scanned)."""
    subs = {k: v for k, v in substitution.items() if v}
    if not subs:
        return []
    written: list[Path] = []
    for idx, target in TARGETS.items():
        panels, labels = {}, None
        for kind, scans in subs.items():
            grid, labels = _grid(scans)
            panels[kind] = grid[..., idx]
        n = len(next(iter(subs.values())))
        fig = plots.heatmaps(
            panels,
            labels,
            colorbar=f"Δ{target}",
            layer_axis=f"centre layer of the {window} substituted layers",
            title=f"Contaminating substitution, {task}: effect on {target} "
            f"(vanilla model with the edited module outputs, window {window}, {n} case(s))",
        )
        written += plots.save(
            fig,
            out / f"fig3_substitution_{task.lower()}_{'p_true' if idx == 0 else 'p_edit'}",
            width=1500,
            height=600,
        )
    return written


def _score_figure(plots, scores: list, task: str, window: int, n_layers: int, out: Path) -> list[Path]:
    """Fig. 10 of one task: ΔP(o_true) per layer with the vanilla score to each token group."""
    from drift.interp import tracing

    grid, labels = tracing.align(scores)  # token groups: a handful of lines
    lines = {lab: grid[:, i, 0].tolist() for i, lab in enumerate(labels)}
    fig = plots.curves(
        range(n_layers),
        lines,
        x_title=f"centre layer of the {window} patched layers",
        y_title=f"Δ{TARGETS[0]}",
        title=f"Edited model with the vanilla score from the last token to one token, {task} "
        f"(window {window}, {len(scores)} case(s), tokens grouped)",
    )
    return plots.save(fig, out / f"fig10_score_patching_{task.lower()}")


def _attention_figure(plots, c: dict, task: str, window: int, out: Path) -> list[Path]:
    """Fig. 5 of one task: the edited model with vanilla attention weights in each window."""
    refs = {f"edited {TARGETS[i]}": float(c["edited"][i]) for i in TARGETS}
    refs |= {f"vanilla {TARGETS[i]}": float(c["vanilla"][i]) for i in TARGETS}
    fig = plots.window_patching(
        c["probs"],
        window,
        names=list(TARGETS.values()),
        references=refs,
        title=f"Edited model with vanilla attention weights in {window} layers, {task} ({c['n']} cases)",
    )
    return plots.save(fig, out / f"fig5_attention_patching_{task.lower()}")


def _drift_figure(plots, layers: range, corr: dict, rows: dict, out: Path) -> list[Path]:
    """Fig. 4: each prompt's KL drift summed over ``layers`` against P(o_edit), per task."""
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
    if not panels:
        return []
    span = f"{layers.start}-{layers.stop - 1}"
    fig = plots.scatter(
        panels,
        x_title=f"Σ KL drift, layers {span}",
        y_title="P(o_edit)",
        title="Attention drift vs the edited object's probability",
    )
    return plots.save(fig, out / "fig4_drift_vs_p_edit")


CORRELATION_HEADER = [
    "task",
    "factor",
    "ρ (prompts)",
    "p (prompts)",
    "prompts",
    "ρ (case means)",
    "95% CI (case means)",
    "p (case means)",
    "cases",
]


def correlation_table(corr: dict, factors, tasks) -> tuple[list[str], list[list]]:
    """Table 2/4's header and rows: per task and factor, Pearson's ρ and p over prompts and over
    case means (:func:`drift.interp.correlate.pearson`); an undefined number reads ``n/a``, never nan.

    >>> from drift.interp.correlate import Correlation
    >>> corr = {"DNS": {"kl_drift": Correlation(0.5, 0.01, 8, 2)}}
    >>> correlation_table(corr, ["kl_drift"], ["DNS"])[1]
    [['DNS', 'kl_drift', '0.500', '1.0e-02', 8, 'n/a', 'n/a', 'n/a', 2]]
    """
    body = []
    for t in tasks:
        for f in factors:
            c = corr[t][f]
            lo, hi = c.ci_cases
            ci = "n/a" if _undefined(lo) or _undefined(hi) else f"[{lo:.2f}, {hi:.2f}]"
            body.append(
                [t, f, _fmt(c.rho, ".3f"), _fmt(c.p, ".1e"), c.n, _fmt(c.rho_cases, ".3f"), ci,
                 _fmt(c.p_cases, ".1e"), c.cases]
            )  # fmt: skip
    return list(CORRELATION_HEADER), body


def _undefined(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _fmt(x, spec: str) -> str:
    return "n/a" if _undefined(x) else format(x, spec)


def _num(x):
    import torch

    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def main(argv=None) -> dict:
    """``python analyses/trace.py ARGS``: the trace with its own parser."""
    return run(parse(argv))


def _provenance(args, model) -> dict:
    """The data by name and what ran the trace (:func:`drift.cli.spec.provenance`)."""
    from drift.cli.spec import file_name, provenance

    return {
        "out": file_name(str(args.out)),  # no path of the machine in a results file
        "data": file_name(args.data),
        "provenance": provenance(
            data=args.data, device=str(model.device), dtype=getattr(args, "dtype", None) or "fp32"
        ),
    }


def run(args: argparse.Namespace) -> dict:
    """The trace of ``args`` (parsed by :func:`parse` or by ``python -m drift trace``)."""
    import warnings

    import torch

    import drift
    from drift.data import load_cases
    from drift.interp import tracing
    from drift.interp.correlate import pearson
    from drift.interp.windows import best_window, drift_rows

    warnings.filterwarnings("ignore", category=UserWarning)
    t0 = time.time()
    torch.manual_seed(args.seed)
    model = drift.load_model(args.model, device=args.device, dtype=args.dtype)
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
    rows = drift_rows(raw["drifts"], layers)
    corr = {t: pearson(rows[t], TABLE4[:1] + TABLE2 + TABLE4[1:]) for t in TASKS}
    written = figures(raw, curves, layers, corr, rows, args, L)
    config = {k: v for k, v in vars(args).items() if k not in ("command", "verbosity", "silent")}
    result = {
        "config": config | {"model": model.name, "n_cases": len(cases)} | _provenance(args, model),
        "patching_window": [start, min(L, start + args.attn_window) - 1],
        "significant_layers": [layers.start, layers.stop - 1],  # where drift is summed
        "correlations": _correlations_json(corr),
        "attention_patching": {t: {k: _num(v) for k, v in c.items()} for t, c in curves.items()},
        "substitution": _substitution_json(raw["substitution"]),
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
    from drift.util.store import save_json

    save_json(out / "trace.json", result)
    print(summary(result, curves, args))
    print(f"wrote {len(written)} figure files and {out / 'trace.json'} in {result['seconds']:.0f} s")
    return result


def _correlations_json(corr: dict) -> dict:
    """Each task's and factor's :class:`drift.interp.correlate.Correlation` as JSON (nan: null)."""
    return {
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
    }


def _substitution_json(substitution: dict) -> dict:
    """Each task's and module kind's contaminating substitution scans as JSON."""
    return {
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
        for t, ks in substitution.items()
    }


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
