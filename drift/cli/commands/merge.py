"""``python -m drift merge``: the parts of one run (results files and/or ``.partial.jsonl`` logs of
one configuration, e.g. ``eval --shard`` or ``audit --shard``) joined into one results file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drift.cli import options as O
from drift.cli.output import claim, summary_table


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="results JSON files of eval, or their .partial.jsonl files")
    O.add_output(
        p, kind="file", required=True, restart="set aside an --out that holds another configuration's results"
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="write the merge even when shards or cases are missing (the file lists them under 'missing')",
    )


def run(args: argparse.Namespace) -> int:
    from drift.cli.runs import coverage, join, read_any

    O.writable_file(args.out)
    O.refuse_same_files({"--out": args.out}, {f"input {x}": x for x in args.inputs})
    from drift.evaluation.compare import check_results

    parts = []
    for x in args.inputs:  # each input read once here, its fields checked before they are joined
        cfg, found = read_any(x, "merge")
        check_results(cfg, found, f"merge: {x}")
        parts.append((x, cfg))
    config, rows = join(args.inputs, "merge")
    if not rows:
        raise ValueError("merge: the inputs hold no finished cases")
    missing, note = coverage(parts, [r["case_id"] for r in rows])
    if note:
        print(f"merge: {note}", file=sys.stderr)
    if missing and not args.allow_missing:
        raise ValueError(
            f"merge: the inputs are not the whole run: missing {'; '.join(missing)}; merge every part, "
            "or pass --allow-missing to write what there is"
        )
    extra = {"missing": missing} if missing else {}
    from filelock import FileLock, Timeout

    from drift.cli.runs import RunConflict

    try:  # the lock an eval writing the same --out holds on its log while it runs
        with FileLock(f"{args.out}.partial.jsonl.lock", timeout=0):
            return _write(args, config, rows, extra)
    except Timeout:
        raise RunConflict(
            f"{args.out} is being written by another process; wait for it to finish or choose another --out"
        ) from None


def _write(args, config: dict, rows: list[dict], extra: dict) -> int:
    from drift.cli.runs import write_results
    from drift.evaluation.metrics import scoring_of

    claim(args.out, config, args.restart, case_ids=[r["case_id"] for r in rows])
    merged = [beside(x, Path(args.out)) for x in args.inputs]
    if config.get("command") == "audit":  # an audit's shards: the summary is the audit's own
        from drift.cli.commands.audit import write_audit

        write_audit(Path(args.out), config, rows, bool(config.get("validate")), merged_from=merged, **extra)
        print(f"wrote {args.out} ({len(rows)} cases)")
        return 0
    result = write_results(args.out, config, rows, scoring_of(config)[1], merged_from=merged, **extra)
    print(summary_table(result["summary"]))
    print(f"wrote {args.out} ({len(rows)} cases)")
    return 0


def beside(path, out: Path) -> str:
    """How a merged file is recorded in the result: its path from the output's folder (``a34.json``
    for a shard beside it), never the machine's absolute path; its name alone where that path
    would climb out of the folder."""
    import os

    rel = os.path.relpath(Path(path).resolve(), Path(out).resolve().parent)
    return Path(path).name if rel.startswith("..") else rel
