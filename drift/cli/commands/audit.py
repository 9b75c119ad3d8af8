"""``python -m drift audit``: each case's edit computed and audited for its risk of specificity
failure (:mod:`drift.interp.audit`); its rows are logged and resumable like eval's, and
``--validate`` scores the cases' prompts too and reports each signal's AUROC."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from drift.cli import options as O


def add_options(p: argparse.ArgumentParser) -> None:
    O.add_audit(p)


def run(args: argparse.Namespace) -> int:
    o = O.Options.of(args)
    O.writable_file(o.out)
    O.check_shard(o.data.shard)
    validate, fit, recall = o.extra["validate"], o.extra["fit"], o.extra["recall"]
    if fit and not validate:
        raise ValueError("--fit needs --validate (the fit is of the combined score to the labels)")
    if not 0 < recall <= 1:
        raise ValueError(f"--recall must be a fraction in (0, 1], got {recall}")
    import drift
    from drift.cli import jobs
    from drift.cli.runs import run_cases
    from drift.editors import get_compute
    from drift.interp import audit

    fit_rows = _fit_rows(fit) if fit else None
    job = jobs.plan(o)
    compute = get_compute(job.editor.editor, drop_rate=job.editor.dr, seed=o.run.seed, **job.overrides)
    config = job.config | {"command": "audit", "validate": validate}
    out = o.out
    O.refuse_same_files({"--out": out}, {"--fit": fit})

    def work(todo, append) -> None:  # the model loads only once the log and --out are checked
        model = drift.load_model(o.model.model, device=o.model.device, dtype=o.model.dtype)
        audit.audit_cases(
            model,
            todo,
            compute,
            validate=validate,
            scoring=o.scoring.scoring,
            on_case=append,
            progress=o.progress,
            edit_batch=o.run.edit_batch,
        )

    def write(rows: list[dict]) -> dict:
        return write_audit(out, config, rows, validate, fit_rows=fit_rows, recall=recall)

    run_cases(out, config, job.cases, work, restart=o.output.restart, write=write)
    print(f"wrote {out}")
    return 0


def write_audit(
    out: Path, config: dict, rows: list[dict], validate: bool, *, fit_rows=None, recall: float = 0.8, **extra
) -> dict:
    """An audit's results file (``{"config", "summary", "cases", ...extra}``), its summary printed
    and, when validated, its calibration figure beside it; ``merge`` writes an audit's shards so."""
    from drift.interp import audit
    from drift.util.store import save_json

    summary: dict = {"n": len(rows)}
    if validate:
        summary = audit.report(rows, fit_rows, recall)
    save_json(out, {"config": config, "summary": summary, "cases": rows, **extra})
    _print_audit(summary, rows, validate)
    _audit_figure(summary, out)
    return summary


def _fit_rows(path: str) -> list[dict]:
    """The labelled edits of an earlier ``audit --validate`` (for ``--fit``); a ``ValueError``
    naming the file when it is not such an audit."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--fit {path}: no such file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--fit {path}: not a JSON file ({e})") from None
    cases = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(cases, list) or not all(isinstance(r, dict) for r in cases):
        raise ValueError(
            f"--fit {path}: expected the JSON object an `audit --validate` writes, with a list of "
            f"cases, got {type(data).__name__}"
        )
    rows = [r for r in cases if r.get("label") is not None]
    if len({r["label"] for r in rows}) < 2:
        raise ValueError(
            f"--fit {path}: needs an audit made with --validate whose edits include failing "
            f"and sound ones; it has {len(rows)} labelled edit(s)"
        )
    return rows


def _audit_figure(summary: dict, out: Path) -> None:
    """The combined score's calibration beside the audit's results (``OUT_calibration.html/.png``)."""
    if not summary.get("calibration"):
        return
    from drift import plots

    title = f"Audit: combined score's calibration ({summary['n']} edits, {summary['fit']})"
    for path in plots.save(
        plots.calibration(summary["calibration"], title=title), out.with_name(f"{out.stem}_calibration")
    ):
        print(f"wrote {path}")


def _print_audit(summary: dict, rows: list[dict], validate: bool) -> None:
    """An audit's summary: the AUROCs (per edit, then per prompt and task), or each edit's signals."""
    if validate and "note" in summary:
        print(f"audit: {summary['note']}", file=sys.stderr)
    elif validate:
        print(
            f"AUROC of the combined score ({summary['fit']}): {summary['auroc']:.3f} "
            f"[{summary['auroc_ci'][0]:.3f}, {summary['auroc_ci'][1]:.3f}] on {summary['n']} edits, "
            f"{summary['failing']} failing"
        )
        for name, a in summary["signals"].items():
            print(f"  {name:<14} AUROC {a:.3f}")
        if summary.get("per_prompt"):
            _print_per_prompt(summary["per_prompt"])
    else:
        for r in rows:
            risk = ", ".join(f"{k} {v:.3g}" for k, v in r["metrics"].items())
            print(f"{r['case_id']:>8} {r['subject'][:30]:<30} {risk}")


def _print_per_prompt(view: dict) -> None:
    """The per-prompt AUROCs, overall and per task."""
    tasks = [t for t, v in view["tasks"].items() if v["prompts"]]
    print("per prompt right before the edit (broken / right):")
    print(f"  {'':<14} {'all':>9}" + "".join(f" {t:>9}" for t in tasks))
    counts = [f"{view['combined']['broken']}/{view['combined']['prompts']}"]
    counts += [f"{view['tasks'][t]['broken']}/{view['tasks'][t]['prompts']}" for t in tasks]
    print(f"  {'prompts':<14}" + "".join(f" {c:>9}" for c in counts))
    for name, a in view["signals"].items():
        per_task = "".join(f" {view['tasks'][t]['signals'][name]:>9.3f}" for t in tasks)
        print(f"  {name:<14} {a:>9.3f}{per_task}")
