"""Command line: ``python -m drift --help``.

Commands:
    eval     evaluate an editor (or none) on edit cases; prints a metrics table, writes JSON
    merge    join the results of ``eval --shard`` runs (finished JSON or partial JSONL) into one
    sweep    many eval runs from a TOML file, cut into chunks and run on Ray (or in this process)
    audit    each edit's risk of specificity failure, from its attention drift (--validate: AUROC)
    compare  a table of finished runs, with paired differences against the first
    demo     load the default model and show the probabilities of a few facts it knows
    doctor   re-hash every cached model and statistic in full; --fix deletes damaged ones
    prepare  convert the model and cache the key statistics and prefixes its editors need
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

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


def _case_and_editor_options(p: argparse.ArgumentParser) -> None:
    """The options ``eval`` and ``audit`` share: which cases, which model, which editor and how."""
    p.add_argument(
        "--data", default="builtin", help="'builtin' or a CounterFact-format JSON file (default: builtin)"
    )
    p.add_argument(
        "--dr",
        type=float,
        default=None,
        metavar="P",
        help="drop-and-rescale fusion of each update with drop rate P (default: 0.8 for adaple, "
        "off for the others; 0 turns it off)",
    )
    p.add_argument(
        "--sadr",
        type=float,
        nargs="?",
        const=-1.0,
        default=None,
        metavar="GAMMA",
        help="add SADR to the editor's objective; alone: the paper's γ and steps for the editor "
        "and model (App. C.2; GPT-J's for a model it did not edit: ROME γ=1e-2 with 80 steps, "
        "MEMIT 5e-3 with 20, PMET 8e-2 with 40); with GAMMA: that γ (the paper's scale, "
        "multiplying the KL) at the editor's steps",
    )
    p.add_argument(
        "--sadr-heads",
        choices=["selective", "all"],
        default="selective",
        help="SADR restrains heads that over-attend (selective, default) or every head (all)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="optimisation steps of the editor (default: its preset)"
    )
    p.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one hyper-parameter of the editor's preset, e.g. --hp n_prefixes=11 "
        "--hp early_stop=0 (repeatable; values are Python literals)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="evaluate only the I-th of N equal contiguous parts of the cases (I from 1); "
        "join the parts with `python -m drift merge`",
    )
    p.add_argument(
        "--device",
        default=None,
        help="torch device for the model, e.g. cuda (default: cuda when available, else cpu)",
    )
    _dtype_option(p)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N cases")
    p.add_argument(
        "--edit-batch",
        type=_positive_int,
        default=None,
        metavar="N",
        help="edited: cases whose target vectors are optimised together, each then applied, scored "
        "and removed in turn (default: on a GPU from its free memory, on a CPU 1: one at a time)",
    )
    p.add_argument("--model", default=None, help="model name, hub id or local folder (default: smollm2-135m)")
    p.add_argument("--seed", type=int, default=0, help="seed for sampling generations (default: 0)")
    p.add_argument(
        "--scoring",
        choices=["mean", "product"],
        default="mean",
        help="score a multi-token target by its mean log-probability per token (default, as the "
        "papers' code) or by its whole probability (product)",
    )


def _positive_int(text: str) -> int:
    """An argparse type: a whole number ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _dtype_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dtype",
        choices=["bf16", "fp16", "fp32"],
        default=None,
        help="precision of the model's weights and forward pass (default: fp32); editors still "
        "solve in float32/float64 and round each update to it once",
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (``sweep`` parses each run's options with its ``eval`` part)."""
    parser = argparse.ArgumentParser(
        prog="python -m drift",
        description="drift: mechanistic interpretability of knowledge editing.",
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser("eval", help="evaluate an editor (or none) on edit cases")
    _case_and_editor_options(ev)
    ev.add_argument("--editor", default="none", help="none (default), rome, rome-awd, memit, pmet or adaple")
    ev.add_argument(
        "--sequential",
        action="store_true",
        help="stack the edits without rolling back and evaluate all edits so far at checkpoints",
    )
    ev.add_argument(
        "--checkpoints",
        default="1,10,25,50,100",
        metavar="N,N,...",
        help="with --sequential: edit counts at which to evaluate (default: 1,10,25,50,100 and the last)",
    )
    ev.add_argument(
        "--batch-edits",
        type=int,
        default=1,
        metavar="B",
        help="with --sequential: edits computed on the same model state and applied together (default: 1)",
    )
    ev.add_argument("--out", required=True, help="where to write the results JSON")
    ev.add_argument("--no-fluency", action="store_true", help="skip generation and the FL metric")
    ev.add_argument(
        "--fluency",
        choices=["reference", "short"],
        default="reference",
        help="FL as the reference (default: every generation prompt, 100 tokens, Treebank words) or "
        "short (drift's earlier form: 2 prompts, 40 new tokens, whitespace words)",
    )
    ev.add_argument("--ppl", default=None, help="JSON list of texts ({'Text': ...} or strings) for PPL")
    ev.add_argument(
        "--ppl-form",
        choices=["reference", "per-text"],
        default="reference",
        help="PPL of the texts joined and cut to 100 tokens (default, the reference's) or the mean "
        "over texts of each one's perplexity (drift's earlier form)",
    )
    ev.add_argument(
        "--res",
        choices=["reference", "accuracy"],
        default="reference",
        help="RES: each reasoning answer against o_true (default, the reference's) or its "
        "teacher-forced token accuracy (drift's earlier form)",
    )
    ev.add_argument(
        "--references",
        default=None,
        metavar="DIR",
        help="folder with ROME's attribute_snippets.json (and idf.npy, tfidf_vocab.json): RefS, "
        "the TF-IDF similarity of generations with texts about o_edit",
    )
    ev.add_argument("--restart", action="store_true", help="ignore finished cases from an interrupted run")
    ev.add_argument(
        "--batch-cases", type=int, default=16, help="unedited: cases scored together (default: 16)"
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument(
        "--pool",
        choices=["prompts", "cases"],
        default="prompts",
        help="summaries count every prompt once (default, as the papers' code) or every case once",
    )

    mg = sub.add_parser("merge", help="join the results of `eval --shard` runs into one results JSON")
    mg.add_argument("inputs", nargs="+", help="results JSON files of eval, or their .partial.jsonl files")
    mg.add_argument("--out", required=True, help="where to write the joined results JSON")
    mg.add_argument(
        "--allow-missing",
        action="store_true",
        help="write the merge even when shards or cases are missing (the file lists them under 'missing')",
    )
    mg.add_argument(
        "--restart", action="store_true", help="set aside an --out that holds another configuration's results"
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
    sw.add_argument("--out", required=True, help="folder for the results files (one per run)")
    sw.add_argument(
        "--engine",
        choices=["ray", "local"],
        default="ray",
        help="ray (default): chunks as Ray tasks; local: one after another in this process",
    )
    sw.add_argument("--address", default=None, help="an existing Ray cluster (default: start one here)")
    sw.add_argument(
        "--workers", type=int, default=None, help="local Ray instance: worker processes (default: cores)"
    )
    sw.add_argument("--device", default=None, help="torch device of every worker's model, e.g. cuda")
    sw.add_argument(
        "--per-gpu", type=int, default=4, help="with --device cuda: workers sharing each GPU (default 4)"
    )
    sw.add_argument("--chunk", type=int, default=None, help="cases per task (default: the spec's, else 10)")
    sw.add_argument("--restart", action="store_true", help="redo runs whose configuration changed")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")

    au = sub.add_parser(
        "audit", help="predict each edit's specificity failure from its attention drift, before deploying it"
    )
    _case_and_editor_options(au)
    au.add_argument("--editor", default="rome", help="rome (default), rome-awd, memit, pmet or adaple")
    au.add_argument(
        "--validate",
        action="store_true",
        help="also evaluate the cases' NS/RS/DNS prompts and report each signal's AUROC",
    )
    au.add_argument(
        "--fit",
        default=None,
        metavar="AUDIT.json",
        help="with --validate: fit the combined score on this earlier audit "
        "(default: two-fold cross-fitting)",
    )
    au.add_argument("--recall", type=float, default=0.8, help="report the precision at this recall (0.8)")
    au.add_argument("--out", required=True, help="where to write audit.json")
    au.add_argument("--restart", action="store_true", help="set an interrupted audit's log aside, start over")
    au.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("demo", help="load the default model and show a few facts' probabilities")
    dr = sub.add_parser("doctor", help="re-hash every cached model and statistic in full")
    dr.add_argument("--fix", action="store_true", help="delete damaged caches (rebuilt when next needed)")
    pr = sub.add_parser(
        "prepare", help="convert the model and cache the key statistics and prefixes its editors need"
    )
    pr.add_argument("--model", default=None, help="hub name or folder (default: SmolLM2-135M, offline)")
    _dtype_option(pr)  # key statistics are cached per dtype: prepare the one the runs will use
    pr.add_argument(
        "--editors",
        default="rome,memit,pmet,adaple",
        help="comma-separated editors whose preset layers get key statistics (default: all four)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from drift import progress

    progress.configure(-1 if args.silent else args.verbosity)
    if args.silent and hasattr(args, "quiet"):
        args.quiet = True  # the command's own --quiet: no bar either
    if args.command == "eval":
        return _eval(args)
    if args.command == "merge":
        return _merge(args)
    if args.command == "compare":
        return _compare(args)
    if args.command == "sweep":
        return _sweep(args)
    if args.command == "audit":
        return _audit(args)
    if args.command == "doctor":
        return _doctor(args)
    if args.command == "prepare":
        return _prepare(args)
    return _demo()


def _doctor(args) -> int:
    """``doctor``: every cache checked in full; status 1 when damage is left in place."""
    from drift.store import cache_root, doctor

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
    from drift.prepare import EDITORS

    editors = [e.strip() for e in args.editors.split(",") if e.strip()]
    unknown = [e for e in editors if e not in (*EDITORS, "rome-awd")]
    if not editors or unknown:
        print(
            f"drift prepare: --editors takes some of {', '.join(EDITORS)}; got {args.editors!r}",
            file=sys.stderr,
        )
        return 2
    import drift
    from drift.prepare import prepare

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


def _eval(args) -> int:
    import drift
    from drift import jobs
    from drift.runs import CaseLog

    _writable(args.out)  # before anything slow
    if args.shard is None and not args.sequential and (slurm := jobs.slurm_shard()) is not None:
        args.shard = slurm
        print(f"drift: --shard {slurm} from the SLURM job array", file=sys.stderr)
    if args.sequential:
        return _sequential(args)
    job = jobs.plan(args)
    with CaseLog(job.partial, job.config, restart=args.restart) as log:
        if log.aside is not None:
            print(f"--restart: the earlier log is kept as {log.aside}", file=sys.stderr)
        _claim(args.out, job.config, args.restart)
        if log.rows:
            print(f"resuming: {len(log.rows)} cases already done in {log.path}", file=sys.stderr)
        model = drift.load_model(args.model, device=args.device, dtype=args.dtype)
        try:
            jobs.run(job, model, log, progress=not args.quiet)
        except KeyboardInterrupt:
            n = len([c for c in job.cases if c.case_id in log.rows])
            raise KeyboardInterrupt(f"{n} of {len(job.cases)} cases saved in {log.path}") from None
        result = log.finish(args.out, [c.case_id for c in job.cases], job.pool)
    print(_table(result["summary"]))
    print(f"wrote {args.out}")
    return 0


def _sequential(args) -> int:
    """``eval --sequential``: one run of stacked edits; the weights are restored at the end."""
    import drift
    from drift import jobs
    from drift.editors import get_compute
    from drift.sequential import sequential_edits
    from drift.store import save_json

    if args.editor == "none":
        raise ValueError("--sequential needs an editor, not 'none'")
    job = jobs.plan(args)
    overrides, cases = job.overrides, job.cases
    try:
        marks = sorted({int(x) for x in args.checkpoints.split(",") if x.strip()} | {len(cases)})
    except ValueError:
        raise ValueError(
            f"--checkpoints must be comma-separated edit counts, got {args.checkpoints!r}"
        ) from None
    compute = get_compute(args.editor, drop_rate=args.dr, seed=args.seed, **overrides)
    config = {
        "data": job.config["data"],
        "data_sha256": job.config["data_sha256"],
        "limit": args.limit,
        "editor": args.editor,
        "model": args.model or drift.DEFAULT_MODEL,
        "seed": args.seed,
        "dr": args.dr,
        "sequential": True,
        "batch_edits": args.batch_edits,
        "checkpoints": marks,
        "sadr": args.sadr,
        "sadr_heads": args.sadr_heads if args.sadr is not None else None,
        "steps": args.steps,
        "hp": job.config.get("hp"),
        "scoring": args.scoring,
        "pool": args.pool,
        **({"dtype": args.dtype} if args.dtype not in (None, "fp32") else {}),  # keys of fp32 runs unchanged
    }
    _claim(args.out, config, args.restart)
    model = drift.load_model(args.model, device=args.device, dtype=args.dtype)
    import torch

    torch.manual_seed(args.seed)
    rows = sequential_edits(
        model,
        cases,
        compute,
        checkpoints=marks,
        batch=args.batch_edits,
        progress=not args.quiet,
        scoring=args.scoring,
        pool=args.pool,
    )
    save_json(Path(args.out), {"config": config, "checkpoints": rows})
    for row in rows:
        print(f"after {row['n_edits']} edits:")
        print(_table(row["summary"]))
    print(f"wrote {args.out}")
    return 0


def _claim(out: str, config: dict, restart: bool) -> None:
    """Refuse (or, with ``--restart``, set aside) an ``--out`` holding another configuration's results."""
    from drift.runs import claim_out

    aside = claim_out(out, config, restart=restart)
    if aside is not None:
        print(f"--restart: the earlier {out} is kept as {aside}", file=sys.stderr)


def _writable(name: str) -> Path:
    """``--out`` checked before any work: a file path whose folder exists (or can be made) and
    can be written."""
    import os

    out = Path(name)
    if out.is_dir():
        raise ValueError(
            f"--out {out} is a folder; give the path of a results file, e.g. {out / 'results.json'}"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot create its folder ({e.strerror})") from None
    if not os.access(out.parent, os.W_OK):
        raise ValueError(f"--out {out}: its folder {out.parent} is not writable")
    return out


def parse_hp(items: list[str]) -> dict:
    """``["n_prefixes=11", "early_stop=0"]`` -> ``{"n_prefixes": 11, "early_stop": 0}``. Values are
    Python literals (numbers, booleans, tuples); anything else is kept as a string. Whether the
    names exist is checked by the editor (:func:`drift.editors.get_editor`)."""
    import ast

    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"--hp expects NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[name.strip()] = value.strip()
    return out


def _merge(args) -> int:
    """Join the parts of one run (results files and/or ``.partial.jsonl`` logs of one configuration)."""
    from drift.metrics import scoring_of
    from drift.runs import claim_out, coverage, join, read_any, refuse_same_files, write_results

    _writable(args.out)
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
    aside = claim_out(args.out, config, restart=args.restart)
    if aside is not None:
        print(f"--restart: the earlier {args.out} is kept as {aside}", file=sys.stderr)
    if config.get("command") == "audit":  # an audit's shards: the summary is the audit's own
        from drift import audit
        from drift.store import save_json

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
    from drift import sweep
    from drift.compare import compare_table
    from drift.metrics import scoring_of

    runs, settings = sweep.load(args.spec)
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
        progress=not args.quiet,
    )
    from drift.runs import run_label

    labels = {name: run_label(res["config"]) for name, res in results.items()}
    table = [
        (name if labels[name] == name else f"{name}: {labels[name]}", res) for name, res in results.items()
    ]
    if len({scoring_of(res["config"]) for _, res in table}) == 1:
        metrics = [m for m in ("ES", "PS", "NS", "RS", "DNS") if any(m in res["summary"] for _, res in table)]
        print(compare_table(table, metrics))
    print(f"wrote {len(results)} results files in {args.out}")
    return 0


def _audit(args) -> int:
    """``audit``: each case's edit computed and audited (its rows logged and resumable like eval's)."""
    import drift
    from drift import audit, jobs
    from drift.editors import get_compute
    from drift.runs import CaseLog, refuse_same_files
    from drift.store import save_json

    _writable(args.out)
    if args.editor == "none":
        raise ValueError("audit needs an editor, not 'none'")
    if args.fit and not args.validate:
        raise ValueError("--fit needs --validate (the fit is of the combined score to the labels)")
    fit_rows = None
    if args.fit:
        fit_rows = _fit_rows(args.fit)
    if not 0 < args.recall <= 1:
        raise ValueError(f"--recall must be a fraction in (0, 1], got {args.recall}")
    for name, value in (("ppl", None), ("no_fluency", True), ("pool", "prompts"), ("batch_cases", 1)):
        setattr(args, name, value)
    job = jobs.plan(args)
    compute = get_compute(args.editor, drop_rate=args.dr, seed=args.seed, **job.overrides)
    config = job.config | {"command": "audit", "validate": args.validate}
    out = Path(args.out)
    refuse_same_files({"--out": out}, {"--fit": args.fit})
    with CaseLog(out.with_name(out.name + ".partial.jsonl"), config, restart=args.restart) as log:
        _claim(args.out, config, args.restart)
        if log.rows:
            print(f"resuming: {len(log.rows)} cases already done in {log.path}", file=sys.stderr)
        model = drift.load_model(args.model, device=args.device, dtype=args.dtype)
        audit.audit_cases(
            model,
            log.remaining(job.cases),
            compute,
            validate=args.validate,
            scoring=args.scoring,
            on_case=log.append,
            progress=not args.quiet,
            edit_batch=args.edit_batch,
        )
        rows = [log.rows[c.case_id] for c in job.cases]
        summary: dict = {"n": len(rows)}
        if args.validate:
            summary = audit.report(rows, fit_rows, args.recall)
        save_json(out, {"config": config, "summary": summary, "cases": rows})
        log.path.unlink()
        Path(str(log.path) + ".lock").unlink(missing_ok=True)
    _print_audit(summary, rows, args.validate)
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
    from drift.compare import compare_table
    from drift.runs import read_any, run_label

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
    from drift.runs import stats

    typed = stats(summary)
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
    from drift.data import CaseError
    from drift.models import ModelLoadError
    from drift.store import CorruptCacheError

    try:
        return main(argv)
    except KeyboardInterrupt as e:
        saved = f"{e}; " if str(e) else "finished cases are saved; "
        print(f"interrupted; {saved}run the same command again to resume", file=sys.stderr)
        return 130
    except (
        CaseError,
        ModelLoadError,
        CorruptCacheError,
        ValueError,
        FileNotFoundError,
        FloatingPointError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a folder that refuses writes: finished cases stay logged
        if e.errno not in WRITE_ERRORS:
            raise
        where = f" {e.filename}" if e.filename else ""
        print(
            f"error: cannot write{where}: {e.strerror}; finished cases stay saved: free space (or set "
            "--out, DRIFT_CACHE to a writable place) and run the same command again",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(cli())
