"""An evaluation job: the options of ``python -m drift eval`` (a :class:`drift.cli.options.Options`)
made into a configuration, an editor and a list of cases, then run case by case into a
:func:`drift.cli.runs.run_cases`.

``eval`` runs one job in its process; ``sweep`` runs the chunks of many jobs on Ray workers. Both
go through :func:`plan` and :func:`run`, so a sweep's run and the same ``eval`` compute the same
rows under the same configuration key (:func:`drift.cli.spec.run_config`).

Example (the tiny model stands in for the default one):
    >>> import tempfile, pathlib
    >>> from drift.__main__ import build_parser
    >>> from drift.cli.runs import run_cases
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.json"
    >>> args = build_parser().parse_args(["eval", "--limit", "2", "--no-fluency", "--out", str(out)])
    >>> job = plan(args)
    >>> job.config["editor"], [c.case_id for c in job.cases]
    ('none', ['0', '1'])
    >>> work = lambda todo, append: run(job, model, todo, append, progress=False)
    >>> result = run_cases(out, job.config, job.cases, work, pool=job.pool)
    >>> result["label"], len(result["cases"])
    ('none', 2)
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from drift.cli.options import EditorOptions, Options, refuse_same_files

if TYPE_CHECKING:
    from drift.data import EditCase
    from drift.evaluation.evaluate import EditFn


@dataclass
class Job:
    """One ``eval`` run, before any model is loaded."""

    options: Options  # as given
    editor: EditorOptions  # as run: --sadr alone resolved to the paper's γ and steps
    config: dict  # what the results depend on; its key names the run
    cases: list[EditCase]  # this process's cases (after --limit and --shard)
    edit: EditFn | None
    texts: list[str] | None  # perplexity texts (--ppl)
    overrides: dict  # the editor's hyper-parameters as given (steps, --hp, SADR's term)
    references: object = None  # texts about o_edit for RefS (--references), loaded

    @property
    def pool(self) -> str:
        return self.options.scoring.pool

    @property
    def partial(self) -> Path:
        """The run's log beside its results file."""
        out = self.options.out
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


def resolve_editor(options: Options) -> tuple[EditorOptions, dict]:
    """The editor's options as they will run, and the editor's keyword overrides: ``--sadr`` alone
    becomes the paper's γ and steps for the editor and model (with any other hyper-parameter of
    the paper's run, under ``--hp``'s)."""
    e = options.editor
    overrides: dict = {}
    hp = dict(e.hp)
    if e.steps is not None and "steps" in hp:  # two values for one setting: the run would lie about one
        raise ValueError(
            f"--steps {e.steps} and --hp steps={hp['steps']} both set the editor's steps; give one"
        )
    if e.sadr is not None:
        from drift.editors.sadr import SADR, paper_setting

        if e.sadr < 0:  # --sadr alone: the paper's γ and steps for this editor and model
            import drift

            setting = paper_setting(e.editor, options.model.model or drift.DEFAULT_MODEL)
            gamma, steps = setting.pop("gamma"), setting.pop("steps")
            e = replace(e, sadr=gamma, steps=e.steps if e.steps is not None else steps)
            hp = setting | hp
        overrides["extra_terms"] = (SADR(e.sadr, e.sadr_heads),)
    if e.steps is not None:
        overrides["steps"] = e.steps
    overrides |= hp
    return replace(e, hp=hp), overrides


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
    """Check the options of ``eval`` and build its job (editor, cases, configuration) without
    loading the model: a bad name, option or file fails here, in seconds."""
    from drift.cli.spec import run_config
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
    texts = _load_texts(o.scoring.ppl) if o.scoring.ppl else None
    loaded = None
    if o.scoring.references is not None:
        from drift.evaluation.metrics import load_reference_texts

        loaded = load_reference_texts(o.scoring.references)  # a bad folder fails before the model loads
    config = run_config(o, editor)
    return Job(o, editor, config, cases, edit, texts, overrides, loaded)


def run(
    job: Job, model, cases: Sequence[EditCase], on_case: Callable[[dict], None], *, progress: bool = True
) -> int:
    """Evaluate ``cases`` of the job, handing each finished case's row to ``on_case`` (a log's
    ``append``); returns how many were evaluated. Each case's result depends only on the model, the
    configuration and the case (sampling is seeded per case), so any split of the cases gives the
    same rows."""
    import torch

    from drift.evaluation.evaluate import evaluate

    o = job.options
    torch.manual_seed(o.run.seed)
    evaluate(
        model,
        cases,
        edit=job.edit,
        ppl_texts=job.texts,
        seed=o.run.seed,
        batch_cases=o.run.batch_size or 16,
        edit_batch=o.run.edit_batch,
        progress=progress,
        on_case=on_case,
        scoring=o.scoring.scoring,
        **_metric_options(job),
    )
    return len(cases)


def _metric_options(job: Job) -> dict:
    """evaluate()'s options for FL, PPL, RES and RefS from the job's configuration."""
    forms = job.config.get("forms", {})
    return {
        "fluency": False if job.options.scoring.fluency is None else forms.get("fluency", "reference"),
        "ppl_form": forms.get("ppl", "reference"),
        "res": forms.get("res", "reference"),
        "references": job.references,
    }
