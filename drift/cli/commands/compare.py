"""``python -m drift compare``: finished runs in one table, with paired differences against the
first (:func:`drift.evaluation.compare.compare_table`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="RESULTS.json",
        help="results JSON files of eval or merge; the first is the reference (LABEL=PATH names a row)",
    )
    p.add_argument(
        "--metrics", default="ES,PS,NS,RS,DNS,AvgS", help="comma-separated (default ES,PS,NS,RS,DNS,AvgS)"
    )


def run(args: argparse.Namespace) -> int:
    from drift.cli.runs import read_any
    from drift.cli.spec import run_label
    from drift.evaluation.compare import check_results, compare_table

    runs = []
    for item in args.inputs:
        label, sep, name = item.partition("=")
        if not sep or Path(item).is_file():  # an "=" inside a file's own name is not a label
            label, sep, name = "", "", item
        config, cases = read_any(name, "compare")
        check_results(config, cases, f"compare: {name}")  # a hand-edited file: named, not a traceback
        runs.append((label if sep else run_label(config), {"config": config, "cases": cases}))
    print(compare_table(runs, [m for m in args.metrics.split(",") if m]))
    return 0
