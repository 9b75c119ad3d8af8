"""An evaluation job: the options of ``python -m drift eval`` (a :class:`drift.cli.options.Options`)
made into a configuration, an editor and a list of cases, then run case by case into a
:func:`drift.cli.runs.run_cases`.

``eval`` runs one job in its process; ``sweep`` runs the chunks of many jobs on Ray workers. Both
go through :func:`plan` and :func:`run`, so a sweep's run and the same ``eval`` compute the same
rows under the same configuration key (the job's :class:`drift.cli.spec.Spec`, built once).

Example (the tiny model stands in for the default one):
    >>> import tempfile, pathlib
    >>> from drift.__main__ import build_parser
    >>> from drift.cli.runs import run_cases
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.json"
    >>> args = build_parser().parse_args(["eval", "--limit", "2", "--no-fluency", "--out", str(out)])
    >>> job = plan(args)
    >>> job.config["editor"], [c.case_id for c in job.cases], job.spec.evaluation
    ('none', ['0', '1'], EvalSpec(fluency=False))
    >>> work = lambda todo, append: run(job, model, todo, append, progress=False)
    >>> result = run_cases(out, job.config, job.cases, work, pool=job.pool)
    >>> result["label"], len(result["cases"])
    ('none', 2)
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from drift.cli.options import EditorOptions, Options, refuse_same_files
from drift.cli.spec import Spec, resolve_editor

if TYPE_CHECKING:
    from drift.data import EditCase
    from drift.evaluation.evaluate import EditFn


@dataclass
class Job:
    """One ``eval`` run, before any model is loaded: its spec, its cases and its editor."""

    options: Options  # as given
    spec: Spec  # the run as it runs (drift.cli.spec.Spec): its configuration, key and label
    cases: list[EditCase]  # this process's cases (after --limit and --shard)
    edit: EditFn | None

    @property
    def config(self) -> dict:
        """What the results depend on (:attr:`drift.cli.spec.Spec.config`); its key names the run."""
        return self.spec.config

    @property
    def editor(self) -> EditorOptions:
        """The editor's options as run: ``--sadr`` alone resolved to the paper's γ and steps."""
        return self.spec.editor

    @property
    def overrides(self) -> dict:
        """The editor's keyword arguments as run (steps, ``--hp``, SADR's term)."""
        return self.spec.editor_overrides()

    @property
    def pool(self) -> str:
        return self.spec.pool

    @property
    def partial(self) -> Path:
        """The run's log beside its results file."""
        out = self.options.out
        return out.with_name(out.name + ".partial.jsonl")


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


def _refuse_editing_flags_without_an_editor(e: EditorOptions) -> None:
    """A ``ValueError`` naming the flags the user gave that only an edit uses, with ``--editor none``.

    >>> _refuse_editing_flags_without_an_editor(EditorOptions(editor="none", sadr=0.01, steps=5))
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --sadr and --steps change how an edit is computed, but --editor is none: add --editor rome ...
    """
    if e.editor != "none":
        return
    given = [f for f, v in (("--sadr", e.sadr), ("--steps", e.steps), ("--dr", e.dr), ("--hp", e.hp)) if v]
    if given:
        raise ValueError(
            f"{' and '.join(given)} change{'s' if len(given) == 1 else ''} how an edit is computed, but "
            "--editor is none: add --editor rome (or rome-awd, memit, pmet, adaple)"
        )


def plan(options: Options | argparse.Namespace) -> Job:
    """Check the options of ``eval`` and build its job (spec, editor, cases) without loading the
    model: a bad name, option or file fails here, in seconds."""
    from drift.data import load_cases
    from drift.editors import get_editor

    o = options if isinstance(options, Options) else Options.of(options)
    _refuse_editing_flags_without_an_editor(o.editor)
    editor, overrides = resolve_editor(o)
    refuse_same_files({"--out": o.output.out}, {"--data": o.data.data, "--ppl": o.scoring.ppl})
    # unknown names and bad options fail before the model loads
    edit = get_editor(editor.editor, drop_rate=editor.dr, seed=o.run.seed, **overrides)
    cases = load_cases(o.data.data, limit=o.data.limit)
    if o.data.shard is not None:
        from drift.util.runtime import share

        total, cases = len(cases), share(cases, o.data.shard)
        if not cases:
            raise ValueError(f"--shard {o.data.shard} of {total} case(s) is empty; use fewer parts")
    return Job(o, Spec.of(o, editor), cases, edit)  # the texts of --ppl, --references load here


def run(
    job: Job, model, cases: Sequence[EditCase], on_case: Callable[[dict], None], *, progress: bool = True
) -> int:
    """Evaluate ``cases`` of the job, handing each finished case's row to ``on_case`` (a log's
    ``append``); returns how many were evaluated. Each case's result depends only on the model, the
    spec and the case (sampling is seeded per case), so any split of the cases gives the same rows."""
    import torch

    from drift.evaluation.evaluate import evaluate

    torch.manual_seed(job.spec.seed)
    evaluate(model, cases, edit=job.edit, spec=job.spec.evaluation, on_case=on_case, progress=progress)
    return len(cases)
