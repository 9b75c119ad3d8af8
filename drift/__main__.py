"""Command line: ``python -m drift --help``.

Commands:
    eval     evaluate an editor (or none) on edit cases; prints a metrics table, writes JSON
    merge    join the results of ``eval --shard`` runs (finished JSON or partial JSONL) into one
    compare  a table of finished runs, with paired differences against the first
    demo     load the default model and show the probabilities of a few facts it knows
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
    "OS",
    "DOS",
    "FL",
    "PPL",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drift",
        description="drift: mechanistic interpretability of knowledge editing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser("eval", help="evaluate an editor (or none) on edit cases")
    ev.add_argument(
        "--data", default="builtin", help="'builtin' or a CounterFact-format JSON file (default: builtin)"
    )
    ev.add_argument("--editor", default="none", help="none (default), rome, rome-awd, memit, pmet or adaple")
    ev.add_argument(
        "--dr",
        type=float,
        default=None,
        metavar="P",
        help="drop-and-rescale fusion of each update with drop rate P (default: 0.8 for adaple, "
        "off for the others; 0 turns it off)",
    )
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
    ev.add_argument(
        "--sadr",
        type=float,
        nargs="?",
        const=-1.0,
        default=None,
        metavar="GAMMA",
        help="add SADR to the editor's objective; alone: the paper's setting for the editor "
        "(ROME γ=1e-2 with 80 steps, MEMIT 5e-3 with 20, PMET 8e-2 with 40); "
        "with GAMMA: that γ (the paper's scale, multiplying the KL) at the editor's steps",
    )
    ev.add_argument(
        "--sadr-heads",
        choices=["selective", "all"],
        default="selective",
        help="SADR restrains heads that over-attend (selective, default) or every head (all)",
    )
    ev.add_argument(
        "--steps", type=int, default=None, help="optimisation steps of the editor (default: its preset)"
    )
    ev.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one hyper-parameter of the editor's preset, e.g. --hp n_prefixes=11 "
        "--hp early_stop=0 (repeatable; values are Python literals)",
    )
    ev.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="evaluate only the I-th of N equal contiguous parts of the cases (I from 1); "
        "join the parts with `python -m drift merge`",
    )
    ev.add_argument(
        "--device",
        default=None,
        help="torch device for the model, e.g. cuda (default: cuda when available, else cpu)",
    )
    ev.add_argument("--limit", type=int, default=None, help="evaluate only the first N cases")
    ev.add_argument(
        "--model", default=None, help="model name, hub id or local folder (default: smollm2-135m)"
    )
    ev.add_argument("--seed", type=int, default=0, help="seed for sampling generations (default: 0)")
    ev.add_argument("--out", required=True, help="where to write the results JSON")
    ev.add_argument("--no-fluency", action="store_true", help="skip generation and the FL metric")
    ev.add_argument("--ppl", default=None, help="JSON list of texts ({'Text': ...} or strings) for PPL")
    ev.add_argument("--restart", action="store_true", help="ignore finished cases from an interrupted run")
    ev.add_argument(
        "--batch-cases", type=int, default=16, help="unedited: cases scored together (default: 16)"
    )
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument(
        "--scoring",
        choices=["mean", "product"],
        default="mean",
        help="score a multi-token target by its mean log-probability per token (default, as the "
        "papers' code) or by its whole probability (product)",
    )
    ev.add_argument(
        "--pool",
        choices=["prompts", "cases"],
        default="prompts",
        help="summaries count every prompt once (default, as the papers' code) or every case once",
    )

    mg = sub.add_parser("merge", help="join the results of `eval --shard` runs into one results JSON")
    mg.add_argument("inputs", nargs="+", help="results JSON files of eval, or their .partial.jsonl files")
    mg.add_argument("--out", required=True, help="where to write the joined results JSON")

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

    sub.add_parser("demo", help="load the default model and show a few facts' probabilities")

    args = parser.parse_args(argv)
    if args.command == "eval":
        return _eval(args)
    if args.command == "merge":
        return _merge(args)
    if args.command == "compare":
        return _compare(args)
    return _demo()


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


def _load_texts(path: str) -> list[str]:
    raw = json.loads(Path(path).read_text())
    texts = [r["Text"] if isinstance(r, dict) else r for r in raw]
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError(f"{path}: expected a non-empty list of texts")
    return texts


def _eval(args) -> int:
    import drift
    from drift.data import load_cases
    from drift.editors import get_editor
    from drift.evaluate import evaluate
    from drift.metrics import summarise
    from drift.store import save_json

    _writable(args.out)  # before anything slow
    overrides = {}
    if args.sadr is not None:
        from drift.editors.sadr import SADR, paper_setting

        if args.sadr < 0:  # --sadr alone: the paper's γ and steps for this editor
            setting = paper_setting(args.editor)
            args.sadr = setting["gamma"]
            if args.steps is None:
                args.steps = setting["steps"]
        overrides["extra_terms"] = (SADR(args.sadr, args.sadr_heads),)
    if args.steps is not None:
        overrides["steps"] = args.steps
    hp = parse_hp(args.hp)
    overrides |= hp
    # unknown names and bad options fail before the model loads
    edit = get_editor(args.editor, drop_rate=args.dr, seed=args.seed, **overrides)
    cases = load_cases(args.data, limit=args.limit)
    if args.shard is not None:
        from drift.runtime import share

        total, cases = len(cases), share(cases, args.shard)
        if not cases:
            raise ValueError(f"--shard {args.shard} of {total} case(s) is empty; use fewer parts")
    if args.sequential:
        return _sequential(args, overrides, cases)
    texts = _load_texts(args.ppl) if args.ppl else None
    out = Path(args.out)
    config = {
        "data": str(args.data),
        "editor": args.editor,
        "model": args.model or drift.DEFAULT_MODEL,
        "seed": args.seed,
        "fluency": not args.no_fluency,
        "ppl": args.ppl,
        "scoring": args.scoring,
        "pool": args.pool,
    }
    if args.sadr is not None:  # only when given, so keys of runs without them stay as they were
        config |= {"sadr": args.sadr, "sadr_heads": args.sadr_heads}
    if args.steps is not None:
        config["steps"] = args.steps
    if args.dr is not None:
        config["dr"] = args.dr
    if hp:
        config["hp"] = {k: repr(v) for k, v in sorted(hp.items())}
    if args.shard is not None:
        config["shard"] = args.shard
    if args.editor != "none" or not args.no_fluency:  # results that depend on sampled text
        from drift.editors.stats import CORPUS_VERSION

        config["sampling"] = CORPUS_VERSION
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    partial = out.with_name(out.name + ".partial.jsonl")
    done = {} if args.restart else _read_partial(partial, key)
    todo = [c for c in cases if c.case_id not in done]
    if done:
        print(f"resuming: {len(done)} cases already done in {partial}", file=sys.stderr)
    model = drift.load_model(args.model, device=args.device)
    import torch

    torch.manual_seed(args.seed)
    partial.parent.mkdir(parents=True, exist_ok=True)
    if not done:
        partial.write_text(json.dumps({"config_key": key}) + "\n")
    with open(partial, "a") as f:

        def save(row: dict) -> None:
            f.write(json.dumps(row) + "\n")
            f.flush()

        try:
            evaluate(
                model,
                todo,
                edit=edit,
                fluency=not args.no_fluency,
                ppl_texts=texts,
                seed=args.seed,
                batch_cases=args.batch_cases,
                progress=not args.quiet,
                on_case=save,
                scoring=args.scoring,
            )
        except KeyboardInterrupt:
            f.flush()
            n = len(_read_partial(partial, key))
            raise KeyboardInterrupt(f"{n} of {len(cases)} cases saved in {partial}") from None
    done = _read_partial(partial, key)
    rows = [done[c.case_id] for c in cases]
    summary = summarise([r["metrics"] for r in rows], args.pool)
    save_json(out, {"config": config, "summary": summary, "cases": rows})
    partial.unlink()
    print(_table(summary))
    print(f"wrote {out}")
    return 0


def _sequential(args, overrides: dict, cases) -> int:
    """``eval --sequential``: one run of stacked edits; the weights are restored at the end."""
    import drift
    from drift.editors import get_compute
    from drift.sequential import sequential_edits
    from drift.store import save_json

    if args.editor == "none":
        raise ValueError("--sequential needs an editor, not 'none'")
    try:
        marks = sorted({int(x) for x in args.checkpoints.split(",") if x.strip()} | {len(cases)})
    except ValueError:
        raise ValueError(
            f"--checkpoints must be comma-separated edit counts, got {args.checkpoints!r}"
        ) from None
    compute = get_compute(args.editor, drop_rate=args.dr, seed=args.seed, **overrides)
    model = drift.load_model(args.model, device=args.device)
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
    config = {
        "data": str(args.data),
        "editor": args.editor,
        "model": args.model or drift.DEFAULT_MODEL,
        "seed": args.seed,
        "dr": args.dr,
        "sequential": True,
        "batch_edits": args.batch_edits,
        "sadr": args.sadr,
        "sadr_heads": args.sadr_heads if args.sadr is not None else None,
        "steps": args.steps,
        "scoring": args.scoring,
        "pool": args.pool,
    }
    save_json(Path(args.out), {"config": config, "checkpoints": rows})
    for row in rows:
        print(f"after {row['n_edits']} edits:")
        print(_table(row["summary"]))
    print(f"wrote {args.out}")
    return 0


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
    """Join shard results: finished results JSON files and/or partial JSONL files of one config."""
    from drift.metrics import scoring_of, summarise
    from drift.store import save_json

    configs, rows = [], {}
    for name in args.inputs:
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"merge: {path} does not exist")
        if path.name.endswith(".partial.jsonl"):
            found, config = _case_rows(path.read_text().splitlines()), None
        else:
            data = _read_results(path, "merge")
            found, config = data["cases"], data["config"]
        if config is not None:
            configs.append({k: v for k, v in config.items() if k != "shard"})
        for row in found:
            rows.setdefault(row["case_id"], row)
    if any(c != configs[0] for c in configs[1:]):
        raise ValueError(
            "merge: the inputs come from different configurations: "
            + "; ".join(json.dumps(c, sort_keys=True) for c in configs)
        )
    if not rows:
        raise ValueError("merge: the inputs hold no finished cases")
    # partial files alone carry no config: they were written by this version's eval (its defaults)
    pool = scoring_of(configs[0])[1] if configs else "prompts"
    summary = summarise([r["metrics"] for r in rows.values()], pool)
    save_json(
        Path(args.out),
        {
            "config": configs[0] if configs else {},
            "summary": summary,
            "cases": list(rows.values()),
            "merged_from": [str(x) for x in args.inputs],
        },
    )
    print(_table(summary))
    print(f"wrote {args.out} ({len(rows)} cases)")
    return 0


def _compare(args) -> int:
    from drift.compare import compare_table, run_label

    runs = []
    for item in args.inputs:
        label, sep, name = item.partition("=")
        if not sep or Path(item).is_file():  # an "=" inside a file's own name is not a label
            label, sep, name = "", "", item
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"compare: {path} does not exist")
        data = _read_results(path, "compare")
        runs.append((label if sep else run_label(data["config"]), data))
    print(compare_table(runs, [m for m in args.metrics.split(",") if m]))
    return 0


def _read_results(path: Path, command: str) -> dict:
    """A results JSON of ``eval``/``merge`` (``{"config", "cases", ...}``), or a ValueError naming
    the file."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{command}: {path} is not a results JSON of `python -m drift eval` ({e})") from e
    missing = [k for k in ("config", "cases") if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(
            f"{command}: {path} is not a results JSON of `python -m drift eval` "
            f"(no {' or '.join(map(repr, missing))})"
        )
    return data


def _read_partial(path: Path, key: str) -> dict[str, dict]:
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    try:
        if not lines or json.loads(lines[0]).get("config_key") != key:
            return {}
    except json.JSONDecodeError:
        return {}
    return {row["case_id"]: row for row in _case_rows(lines[1:])}


def _case_rows(lines: list[str]) -> list[dict]:
    """The finished cases among the lines of a partial file (a header or a line cut by an
    interruption is skipped)."""
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "case_id" in row and "metrics" in row:
            rows.append(row)
    return rows


def _table(summary: dict) -> str:
    head, vals = [], []
    for k in TABLE_ORDER:
        if k in summary:
            lo, hi = summary[f"{k}_ci"] if f"{k}_ci" in summary else (None, None)
            head.append(f"{k:>16}")
            ci = f"±{(hi - lo) / 2:.1f}" if lo is not None and lo == lo else ""
            vals.append(f"{summary[k]:>10.2f}{ci:>6}")
    return "".join(head) + "\n" + "".join(vals)


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


if __name__ == "__main__":
    sys.exit(cli())
