"""An evaluation job: the options of ``python -m drift eval`` made into a configuration, an editor
and a list of cases, then run case by case into a :class:`drift.runs.CaseLog`.

``eval`` runs one job in its process; ``sweep`` runs the chunks of many jobs on Ray workers. Both
go through :func:`plan` and :func:`run`, so a sweep's run and the same ``eval`` compute the same
rows under the same configuration key.

Example (the tiny model stands in for the default one):
    >>> import tempfile, pathlib
    >>> from drift.__main__ import build_parser
    >>> from drift.runs import CaseLog
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.json"
    >>> args = build_parser().parse_args(["eval", "--limit", "2", "--no-fluency", "--out", str(out)])
    >>> job = plan(args)
    >>> job.config["editor"], [c.case_id for c in job.cases]
    ('none', ['0', '1'])
    >>> with CaseLog(job.partial, job.config) as log:
    ...     n = run(job, model, log, progress=False)
    ...     result = log.finish(out, [c.case_id for c in job.cases], job.pool)
    >>> result["label"], len(result["cases"])
    ('none', 2)
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from drift.data import EditCase
from drift.evaluate import EditFn
from drift.runs import CaseLog, digest_of, file_or_name, refuse_same_files


@dataclass
class Job:
    """One ``eval`` run, before any model is loaded."""

    args: argparse.Namespace
    config: dict  # what the results depend on; its key names the run
    cases: list[EditCase]  # this process's cases (after --limit and --shard)
    edit: EditFn | None
    texts: list[str] | None  # perplexity texts (--ppl)
    overrides: dict  # the editor's hyper-parameters as given (steps, --hp, SADR's term)
    references: object = None  # texts about o_edit for RefS (--references), loaded

    @property
    def pool(self) -> str:
        return self.args.pool

    @property
    def partial(self) -> Path:
        """The run's log beside its results file."""
        out = Path(self.args.out)
        return out.with_name(out.name + ".partial.jsonl")


def _load_texts(path: str) -> list[str]:
    """The texts of a ``--ppl`` file: a JSON list of strings or of ``{"Text": ...}`` objects; a
    ``ValueError`` naming the file and the first bad entry."""
    if not Path(path).is_file():
        raise ValueError(f"--ppl {path}: no such file")
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"--ppl {path}: not a JSON file of texts ({e})") from None
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"--ppl {path}: expected a non-empty JSON list of texts")
    texts = []
    for i, r in enumerate(raw):
        text = r.get("Text") if isinstance(r, dict) else r
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"--ppl {path}: entry {i} must be a non-empty string or an object with a "
                f"'Text' string, got {json.dumps(r)[:60]}"
            )
        texts.append(text)
    return texts


def slurm_shard() -> str | None:
    """``"I/N"`` for this task of a SLURM job array, or ``None`` outside one: the task's place
    among ``SLURM_ARRAY_TASK_COUNT`` tasks, from ``SLURM_ARRAY_TASK_ID``, ``SLURM_ARRAY_TASK_MIN``
    and ``SLURM_ARRAY_TASK_STEP`` (``--array=0-6:2`` has tasks 0, 2, 4, 6).

    >>> os.environ.update(SLURM_ARRAY_TASK_ID="4", SLURM_ARRAY_TASK_MIN="0", SLURM_ARRAY_TASK_COUNT="4",
    ...                   SLURM_ARRAY_TASK_STEP="2")
    >>> slurm_shard()
    '3/4'
    >>> for k in ("ID", "MIN", "COUNT", "STEP"):
    ...     del os.environ[f"SLURM_ARRAY_TASK_{k}"]
    """
    env = {k: os.environ.get(f"SLURM_ARRAY_TASK_{k}") for k in ("ID", "COUNT", "MIN", "STEP")}
    if env["ID"] is None or env["COUNT"] is None:
        return None
    try:
        task, count = int(env["ID"]), int(env["COUNT"])
        first, step = int(env["MIN"] or 0), int(env["STEP"] or 1)
    except ValueError:
        raise ValueError(
            "SLURM_ARRAY_TASK_ID/_COUNT/_MIN/_STEP must be whole numbers, got "
            + ", ".join(f"{k}={v!r}" for k, v in env.items())
        ) from None
    index = (task - first) // max(step, 1) + 1
    if (task - first) % max(step, 1) or not 1 <= index <= count:
        raise ValueError(
            f"SLURM task {task} is not one of {count} tasks from {first} in steps of {step} "
            "(SLURM_ARRAY_TASK_ID/_MIN/_STEP/_COUNT); pass --shard I/N"
        )
    return f"{index}/{count}"


def plan(args: argparse.Namespace) -> Job:
    """Check the options of ``eval`` and build its job (editor, cases, configuration) without
    loading the model: a bad name, option or file fails here, in seconds."""
    import drift
    from drift.__main__ import parse_hp
    from drift.data import load_cases
    from drift.editors import get_editor

    overrides: dict = {}
    hp = parse_hp(args.hp)
    if args.sadr is not None:
        from drift.editors.sadr import SADR, paper_setting

        if args.sadr < 0:  # --sadr alone: the paper's γ and steps for this editor and model
            setting = paper_setting(args.editor, args.model or drift.DEFAULT_MODEL)
            args.sadr, steps = setting.pop("gamma"), setting.pop("steps")
            if args.steps is None:
                args.steps = steps
            hp = setting | hp  # any other hyper-parameter of the paper's run, under --hp's
        overrides["extra_terms"] = (SADR(args.sadr, args.sadr_heads),)
    if args.steps is not None:
        overrides["steps"] = args.steps
    overrides |= hp
    refuse_same_files({"--out": args.out}, {"--data": args.data, "--ppl": args.ppl})
    # unknown names and bad options fail before the model loads
    edit = get_editor(args.editor, drop_rate=args.dr, seed=args.seed, **overrides)
    cases = load_cases(args.data, limit=args.limit)
    if args.shard is not None:
        from drift.runtime import share

        total, cases = len(cases), share(cases, args.shard)
        if not cases:
            raise ValueError(f"--shard {args.shard} of {total} case(s) is empty; use fewer parts")
    texts = _load_texts(args.ppl) if args.ppl else None
    forms = {  # audit's options have none of these: the defaults
        "fluency": None if args.no_fluency else getattr(args, "fluency", "reference"),
        "ppl": getattr(args, "ppl_form", "reference"),
        "res": getattr(args, "res", "reference"),
    }
    references = getattr(args, "references", None)
    if references is not None:
        from drift.metrics import load_reference_texts

        loaded = load_reference_texts(references)  # a bad folder fails before the model loads
    config = {
        "data": file_or_name(str(args.data)),
        "editor": args.editor,
        "model": args.model or drift.DEFAULT_MODEL,
        "seed": args.seed,
        "fluency": not args.no_fluency,
        "ppl": file_or_name(args.ppl),
        "scoring": args.scoring,
        "pool": args.pool,
        # what the inputs hold: a case file edited since a run began is another configuration
        "data_sha256": digest_of(args.data),
        "limit": args.limit,  # not in the key (a run whose limit grew keeps its cases)
        "forms": forms,  # how FL, PPL and RES are computed (drift/metrics.py)
    }
    if references is not None:
        config["references"] = file_or_name(references)
    if args.ppl:
        config["ppl_sha256"] = digest_of(args.ppl)
    if args.sadr is not None:  # only when given, so keys of runs without them stay as they were
        config |= {"sadr": args.sadr, "sadr_heads": args.sadr_heads}
    if args.steps is not None:
        config["steps"] = args.steps
    if args.dr is not None:
        config["dr"] = args.dr
    if getattr(args, "dtype", None) not in (None, "fp32"):  # fp32 is the default: its keys unchanged
        config["dtype"] = args.dtype
    if hp:
        config["hp"] = {k: repr(v) for k, v in sorted(hp.items())}
    if args.shard is not None:
        config["shard"] = args.shard
    if args.editor != "none" or not args.no_fluency:  # results that depend on sampled text
        from drift.editors.stats import CORPUS_VERSION

        config["sampling"] = CORPUS_VERSION
    return Job(args, config, cases, edit, texts, overrides, loaded if references is not None else None)


def run(
    job: Job, model, log: CaseLog, cases: Sequence[EditCase] | None = None, *, progress: bool = True
) -> int:
    """Evaluate the cases of ``cases`` (default: the job's) that ``log`` has not finished, appending
    each to the log as it finishes; returns how many were evaluated. Each case's result depends only
    on the model, the configuration and the case (sampling is seeded per case), so any split of
    the cases gives the same rows."""
    import torch

    from drift.evaluate import evaluate

    todo = log.remaining(job.cases if cases is None else cases)
    torch.manual_seed(job.args.seed)
    evaluate(
        model,
        todo,
        edit=job.edit,
        ppl_texts=job.texts,
        seed=job.args.seed,
        batch_cases=job.args.batch_cases,
        edit_batch=getattr(job.args, "edit_batch", None),
        progress=progress,
        on_case=log.append,
        scoring=job.args.scoring,
        **_metric_options(job),
    )
    return len(todo)


def _metric_options(job: Job) -> dict:
    """evaluate()'s options for FL, PPL, RES and RefS from the job's configuration."""
    forms = job.config.get("forms", {})
    return {
        "fluency": False if job.args.no_fluency else forms.get("fluency", "reference"),
        "ppl_form": forms.get("ppl", "reference"),
        "res": forms.get("res", "reference"),
        "references": job.references,
    }
