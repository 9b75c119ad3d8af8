"""Command line: ``python -m drift --help``. Its options are defined in :mod:`drift.cli.options`; the
analyses' commands live in :mod:`drift.cli.commands`.

Commands:
    eval     evaluate an editor (or none) on edit cases; prints a metrics table, writes JSON
    merge    join the results of ``eval --shard`` runs (finished JSON or partial JSONL) into one
    sweep    many eval runs from a TOML file, cut into chunks and run on Ray (or in this process)
    audit    each edit's risk of specificity failure, from its attention drift (--validate: AUROC)
    compare  a table of finished runs, with paired differences against the first
    trace       where and why an edit fails on unrelated prompts (= python analyses/trace.py)
    sadr        SADR's Table 3, Fig. 6 and Fig. 7 (= analyses/sadr.py)
    mechanism   what SADR does inside ROME (= analyses/sadr_mechanism.py)
    sequential  sequential editing and knowledge attenuation (= analyses/sequential.py)
    steps       ROME at 20 steps against 80 (= analyses/steps.py)
    demo     load the default model and show the probabilities of a few facts it knows
    doctor   re-hash every cached model and statistic in full; --fix deletes damaged ones
    prepare  convert the model and cache the key statistics and prefixes its editors need
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from drift.cli import options as O
from drift.cli.options import parse_hp

__all__ = ["build_parser", "cli", "main", "parse_hp"]

TABLE_ORDER = [
    "ES",
    "EM",
    "PS",
    "PM",
    "NS",
    "NM",
    "RS",
    "RM",
    "DNS",
    "DNM",
    "AvgS",
    "RES",
    "SAS",
    "OS",
    "DOS",
    "FL",
    "RefS",
    "PPL",
]


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: every subcommand's options from :mod:`drift.cli.options` (the
    analyses' from their modules in :mod:`drift.cli.commands`, which import nothing heavy either)."""
    import importlib

    from drift.cli import commands

    parser = O.parser(
        "python -m drift",
        "drift: mechanistic interpretability of knowledge editing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest="verbosity",
        help="log what drift does, with every edit's loss per step (-vv: debug detail too)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", dest="silent", help="errors only: no progress bars, no notes"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=O.Parser)

    ev = sub.add_parser("eval", help="evaluate an editor (or none) on edit cases")
    O.add_eval(ev)

    mg = sub.add_parser("merge", help="join the results of `eval --shard` runs into one results JSON")
    mg.add_argument("inputs", nargs="+", help="results JSON files of eval, or their .partial.jsonl files")
    O.add_output(
        mg,
        kind="file",
        required=True,
        restart="set aside an --out that holds another configuration's results",
        quiet=False,
    )
    mg.add_argument(
        "--allow-missing",
        action="store_true",
        help="write the merge even when shards or cases are missing (the file lists them under 'missing')",
    )

    cp = sub.add_parser(
        "compare", help="a table of finished eval runs, with paired differences against the first"
    )
    cp.add_argument(
        "inputs",
        nargs="+",
        metavar="RESULTS.json",
        help="results JSON files of eval or merge; the first is the reference (LABEL=PATH names a row)",
    )
    cp.add_argument(
        "--metrics", default="ES,PS,NS,RS,DNS,AvgS", help="comma-separated (default ES,PS,NS,RS,DNS,AvgS)"
    )

    sw = sub.add_parser(
        "sweep", help="many eval runs from a TOML file, in chunks, on Ray workers (or in this process)"
    )
    sw.add_argument("spec", metavar="SPEC.toml", help="the sweep: shared eval options and [[run]] tables")
    O.add_output(sw, kind="folder", required=True, restart="redo runs whose configuration changed")
    O.add_model(sw, model=False, dtype=False)
    O.add_engine(sw)

    au = sub.add_parser(
        "audit", help="predict each edit's specificity failure from its attention drift, before deploying it"
    )
    O.add_audit(au)

    for name, (module, help_text) in commands.COMMANDS.items():
        importlib.import_module(module).options(sub.add_parser(name, help=help_text))

    sub.add_parser("demo", help="load the default model and show a few facts' probabilities")
    dr = sub.add_parser("doctor", help="re-hash every cached model and statistic in full")
    dr.add_argument("--fix", action="store_true", help="delete damaged caches (rebuilt when next needed)")
    pr = sub.add_parser(
        "prepare", help="convert the model and cache the key statistics and prefixes its editors need"
    )
    O.add_model(pr, device=False)  # key statistics are cached per dtype: prepare the one the runs will use
    pr.add_argument(  # checked by the command, which names the bad editor and returns 2
        "--editors",
        default="rome,memit,pmet,adaple",
        help="comma-separated editors whose preset layers get key statistics (default: all four)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from drift.util import progress

    progress.configure(-1 if args.silent else args.verbosity)
    if args.command == "eval":
        return _eval(O.Options.of(args))
    if args.command == "merge":
        return _merge(args)
    if args.command == "compare":
        return _compare(args)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "audit":
        return _audit(O.Options.of(args))
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "prepare":
        return _prepare(args)
    if args.command == "demo":
        return _demo()
    import importlib

    from drift.cli import commands

    result = importlib.import_module(commands.COMMANDS[args.command][0]).run(args)
    return result if isinstance(result, int) else 0


def _doctor(args) -> int:
    """``doctor``: every cache checked in full; status 1 when damage is left in place."""
    from drift.util.store import cache_root, doctor

    found = doctor(fix=args.fix)
    damaged = [(p, why) for p, why in found if why is not None]
    for path, why in found:
        state = "ok" if why is None else f"DAMAGED: {why}" + ("; deleted" if args.fix else "")
        print(f"{path}: {state}")
    print(f"checked {len(found)} cache entries in {cache_root()}; {len(damaged)} damaged")
    if damaged and not args.fix:
        print("run `python -m drift doctor --fix` to delete them (each is rebuilt when next needed)")
        return 1
    return 0


def _prepare(args) -> int:
    """``prepare``: the one-time work of a model's first edits, done now and cached."""
    try:
        editors = O.editor_list(args.editors)
    except argparse.ArgumentTypeError as e:
        print(f"drift prepare: --editors: {e}; got {args.editors!r}", file=sys.stderr)
        return 2
    import drift
    from drift.cli.prepare import prepare

    done = prepare(drift.load_model(args.model, dtype=args.dtype), editors)
    secs = done["seconds"]
    print(
        f"prepared {done['model']}: key statistics of layers {done['layers']} ({secs['key_statistics']} s), "
        f"context prefixes ({secs['prefixes']} s)"
    )
    return 0


def _demo() -> int:
    import drift
    from drift.data import load_cases

    model = drift.load_model()
    print(model)
    for case in load_cases("builtin")[:8]:
        p_true = model.target_prob(case.prompt, case.o_true)
        p_edit = model.target_prob(case.prompt, case.o_edit)
        print(f"P({case.o_true!r:>14} | {case.prompt!r}) = {p_true:.3f}   P({case.o_edit!r}) = {p_edit:.3f}")
    return 0


def _eval(o: O.Options) -> int:
    import dataclasses

    from drift.cli import jobs

    O.writable_file(o.out)  # before anything slow
    O.check_shard(o.data.shard)
    if o.data.shard is None and not o.extra.get("sequential") and (slurm := jobs.slurm_shard()) is not None:
        o = dataclasses.replace(o, data=dataclasses.replace(o.data, shard=slurm))
        print(f"drift: --shard {slurm} from the SLURM job array", file=sys.stderr)
    if o.extra.get("sequential"):
        return _sequential(o)
    import drift
    from drift.cli.runs import CaseLog

    job = jobs.plan(o)
    with CaseLog(job.partial, job.config, restart=o.output.restart) as log:
        if log.aside is not None:
            print(f"--restart: the earlier log is kept as {log.aside}", file=sys.stderr)
        _claim(o.out, job.config, o.output.restart)
        if log.rows:
            print(f"resuming: {len(log.rows)} cases already done in {log.path}", file=sys.stderr)
        model = drift.load_model(o.model.model, device=o.model.device, dtype=o.model.dtype)
        try:
            jobs.run(job, model, log, progress=o.progress)
        except KeyboardInterrupt:
            n = len([c for c in job.cases if c.case_id in log.rows])
            raise KeyboardInterrupt(f"{n} of {len(job.cases)} cases saved in {log.path}") from None
        result = log.finish(o.out, [c.case_id for c in job.cases], job.pool)
    print(_table(result["summary"]))
    print(f"wrote {o.out}")
    return 0


def _sequential(o: O.Options) -> int:
    """``eval --sequential``: one run of stacked edits; the weights are restored at the end."""
    if o.editor.editor == "none":
        raise ValueError("--sequential needs an editor, not 'none'")
    import drift
    from drift.cli import jobs
    from drift.cli.runs import run_config
    from drift.editors import get_compute
    from drift.evaluation.sequential import sequential_edits
    from drift.util.store import save_json

    job = jobs.plan(o)
    cases = job.cases
    marks = sorted(set(o.extra["checkpoints"]) | {len(cases)})
    compute = get_compute(job.editor.editor, drop_rate=job.editor.dr, seed=o.run.seed, **job.overrides)
    config = run_config(
        o, job.editor, kind="sequential", checkpoints=marks, batch_edits=o.extra["batch_edits"]
    )
    _claim(o.out, config, o.output.restart)
    model = drift.load_model(o.model.model, device=o.model.device, dtype=o.model.dtype)
    import torch

    torch.manual_seed(o.run.seed)
    rows = sequential_edits(
        model,
        cases,
        compute,
        checkpoints=marks,
        batch=o.extra["batch_edits"],
        progress=o.progress,
        scoring=o.scoring.scoring,
        pool=o.scoring.pool,
    )
    save_json(o.out, {"config": config, "checkpoints": rows})
    for row in rows:
        print(f"after {row['n_edits']} edits:")
        print(_table(row["summary"]))
    print(f"wrote {o.out}")
    return 0


def _claim(out: str, config: dict, restart: bool) -> None:
    """Refuse (or, with ``--restart``, set aside) an ``--out`` holding another configuration's results."""
    from drift.cli.runs import claim_out

    aside = claim_out(out, config, restart=restart)
    if aside is not None:
        print(f"--restart: the earlier {out} is kept as {aside}", file=sys.stderr)


def _merge(args) -> int:
    """Join the parts of one run (results files and/or ``.partial.jsonl`` logs of one configuration)."""
    from drift.cli.runs import coverage, join, read_any, refuse_same_files, write_results
    from drift.evaluation.metrics import scoring_of

    O.writable_file(args.out)
    refuse_same_files({"--out": args.out}, {f"input {x}": x for x in args.inputs})
    config, rows = join(args.inputs, "merge")
    if not rows:
        raise ValueError("merge: the inputs hold no finished cases")
    parts = [(x, read_any(x, "merge")[0]) for x in args.inputs]
    missing, note = coverage(parts, [r["case_id"] for r in rows])
    if note:
        print(f"merge: {note}", file=sys.stderr)
    if missing and not args.allow_missing:
        raise ValueError(
            f"merge: the inputs are not the whole run: missing {'; '.join(missing)}; merge every part, "
            "or pass --allow-missing to write what there is"
        )
    extra = {"missing": missing} if missing else {}
    _claim(args.out, config, args.restart)
    if config.get("command") == "audit":  # an audit's shards: the summary is the audit's own
        from drift.interp import audit
        from drift.util.store import save_json

        validate = bool(config.get("validate"))
        summary = audit.report(rows) if validate else {"n": len(rows)}
        merged = [str(x) for x in args.inputs]
        save_json(
            Path(args.out),
            {"config": config, "summary": summary, "cases": rows, "merged_from": merged, **extra},
        )
        _print_audit(summary, rows, validate)
        _audit_figure(summary, Path(args.out))
        print(f"wrote {args.out} ({len(rows)} cases)")
        return 0
    result = write_results(
        args.out, config, rows, scoring_of(config)[1], merged_from=[str(x) for x in args.inputs], **extra
    )
    print(_table(result["summary"]))
    print(f"wrote {args.out} ({len(rows)} cases)")
    return 0


def _sweep(args) -> int:
    from drift.cli import sweep

    runs, settings = sweep.load(args.spec)  # every run's options checked here, before torch
    from drift.cli.runs import run_label
    from drift.evaluation.compare import compare_table
    from drift.evaluation.metrics import scoring_of

    results = sweep.execute(
        runs,
        args.out,
        chunk=args.chunk if args.chunk is not None else settings.get("chunk", 10),
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        device=args.device,
        per_gpu=args.per_gpu,
        restart=args.restart,
        progress=not (args.quiet or args.silent),
    )
    labels = {name: run_label(res["config"]) for name, res in results.items()}
    table = [
        (name if labels[name] == name else f"{name}: {labels[name]}", res) for name, res in results.items()
    ]
    if len({scoring_of(res["config"]) for _, res in table}) == 1:
        metrics = [m for m in ("ES", "PS", "NS", "RS", "DNS") if any(m in res["summary"] for _, res in table)]
        print(compare_table(table, metrics))
    print(f"wrote {len(results)} results files in {args.out}")
    return 0


def _audit(o: O.Options) -> int:
    """``audit``: each case's edit computed and audited (its rows logged and resumable like eval's)."""
    O.writable_file(o.out)
    O.check_shard(o.data.shard)
    validate, fit, recall = o.extra["validate"], o.extra["fit"], o.extra["recall"]
    if fit and not validate:
        raise ValueError("--fit needs --validate (the fit is of the combined score to the labels)")
    if not 0 < recall <= 1:
        raise ValueError(f"--recall must be a fraction in (0, 1], got {recall}")
    import drift
    from drift.cli import jobs
    from drift.cli.runs import CaseLog, refuse_same_files
    from drift.editors import get_compute
    from drift.interp import audit
    from drift.util.store import save_json

    fit_rows = _fit_rows(fit) if fit else None
    job = jobs.plan(o)
    compute = get_compute(job.editor.editor, drop_rate=job.editor.dr, seed=o.run.seed, **job.overrides)
    config = job.config | {"command": "audit", "validate": validate}
    out = o.out
    refuse_same_files({"--out": out}, {"--fit": fit})
    with CaseLog(out.with_name(out.name + ".partial.jsonl"), config, restart=o.output.restart) as log:
        _claim(out, config, o.output.restart)
        if log.rows:
            print(f"resuming: {len(log.rows)} cases already done in {log.path}", file=sys.stderr)
        model = drift.load_model(o.model.model, device=o.model.device, dtype=o.model.dtype)
        audit.audit_cases(
            model,
            log.remaining(job.cases),
            compute,
            validate=validate,
            scoring=o.scoring.scoring,
            on_case=log.append,
            progress=o.progress,
            edit_batch=o.run.edit_batch,
        )
        rows = [log.rows[c.case_id] for c in job.cases]
        summary: dict = {"n": len(rows)}
        if validate:
            summary = audit.report(rows, fit_rows, recall)
        save_json(out, {"config": config, "summary": summary, "cases": rows})
        log.path.unlink()
        Path(str(log.path) + ".lock").unlink(missing_ok=True)
    _print_audit(summary, rows, validate)
    _audit_figure(summary, out)
    print(f"wrote {out}")
    return 0


def _fit_rows(path: str) -> list[dict]:
    """The labelled edits of an earlier ``audit --validate`` (for ``--fit``); a ``ValueError``
    naming the file when it is not such an audit."""
    import json

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
        view = summary.get("per_prompt")
        if view:
            tasks = [t for t, v in view["tasks"].items() if v["prompts"]]
            print("per prompt right before the edit (broken / right):")
            print(f"  {'':<14} {'all':>9}" + "".join(f" {t:>9}" for t in tasks))
            counts = [f"{view['combined']['broken']}/{view['combined']['prompts']}"]
            counts += [f"{view['tasks'][t]['broken']}/{view['tasks'][t]['prompts']}" for t in tasks]
            print(f"  {'prompts':<14}" + "".join(f" {c:>9}" for c in counts))
            for name, a in view["signals"].items():
                per_task = "".join(f" {view['tasks'][t]['signals'][name]:>9.3f}" for t in tasks)
                print(f"  {name:<14} {a:>9.3f}{per_task}")
    else:
        for r in rows:
            risk = ", ".join(f"{k} {v:.3g}" for k, v in r["metrics"].items())
            print(f"{r['case_id']:>8} {r['subject'][:30]:<30} {risk}")


def _compare(args) -> int:
    from drift.cli.runs import read_any, run_label
    from drift.evaluation.compare import compare_table

    runs = []
    for item in args.inputs:
        label, sep, name = item.partition("=")
        if not sep or Path(item).is_file():  # an "=" inside a file's own name is not a label
            label, sep, name = "", "", item
        config, cases = read_any(name, "compare")
        runs.append((label if sep else run_label(config), {"config": config, "cases": cases}))
    print(compare_table(runs, [m for m in args.metrics.split(",") if m]))
    return 0


def _table(summary: dict) -> str:
    from drift.evaluation.metrics import summary_stats

    typed = summary_stats(summary)
    head, vals = [], []
    for k in TABLE_ORDER:
        if k in typed:
            hw = typed[k].half_width
            head.append(f"{k:>16}")
            ci = f"±{hw:.1f}" if hw == hw else ""
            vals.append(f"{typed[k].mean:>10.2f}{ci:>6}")
    return "".join(head) + "\n" + "".join(vals)


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def cli(argv: list[str] | None = None) -> int:
    """The console entry: :func:`main`, with a user's mistake (bad file, option, case, model name,
    damaged cache) printed as one line ``error: ...`` and exit status 2 instead of a traceback,
    and Ctrl-C as one line and status 130 (finished cases stay saved; the same command resumes)."""
    try:
        return main(argv)
    except KeyboardInterrupt as e:
        saved = f"{e}; " if str(e) else "finished cases are saved; "
        print(f"interrupted; {saved}run the same command again to resume", file=sys.stderr)
        return 130
    except O.OptionError:  # the parser has printed it
        return 2
    except OSError as e:  # a full disk or a folder that refuses writes: finished cases stay logged
        if e.errno not in WRITE_ERRORS:
            if O.user_error(e):
                print(f"error: {e}", file=sys.stderr)
                return 2
            raise
        where = f" {e.filename}" if e.filename else ""
        print(
            f"error: cannot write{where}: {e.strerror}; finished cases stay saved: free space (or set "
            "--out, DRIFT_CACHE to a writable place) and run the same command again",
            file=sys.stderr,
        )
        return 2
    except Exception as e:
        if not O.user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
