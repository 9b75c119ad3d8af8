"""``python -m drift sweep SPEC.toml``: many eval runs from one file, cut into chunks and run on Ray
workers or in this process (:mod:`drift.cli.sweep`); one results file per run, resumable."""

from __future__ import annotations

import argparse

from drift.cli import options as O


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC.toml", help="the sweep: shared eval options and [[run]] tables")
    O.add_output(p, kind="folder", required=True)
    O.add_model(p, model=False, dtype=False)
    O.add_engine(p)


def run(args: argparse.Namespace) -> int:
    from drift.cli import sweep

    runs, settings = sweep.load(args.spec)  # every run's options checked here, before torch
    from drift.cli.spec import run_label
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
        progress=not args.quiet,
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
