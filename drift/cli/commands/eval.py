"""``python -m drift eval``: one editor (or none) evaluated on edit cases, case by case.

Each finished case is appended to ``OUT.partial.jsonl`` (a rerun resumes there); the results file
``OUT`` is written when every case is in. ``--sequential`` stacks the edits instead and evaluates
all edits so far at checkpoints.

    python -m drift eval --editor rome --data builtin --limit 2 --out r.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from drift.cli import options as O
from drift.cli.output import claim, summary_table


def add_options(p: argparse.ArgumentParser) -> None:
    """``eval``'s options (also what a sweep file's keys may set)."""
    O.add_eval(p)


def run(args: argparse.Namespace) -> int:
    o = O.Options.of(args)
    from drift.cli import jobs

    O.writable_file(o.out)  # before anything slow
    O.check_shard(o.data.shard)
    if o.data.shard is None and not o.extra.get("sequential") and (slurm := jobs.slurm_shard()) is not None:
        o = dataclasses.replace(o, data=dataclasses.replace(o.data, shard=slurm))
        print(f"drift: --shard {slurm} from the SLURM job array", file=sys.stderr)
    if o.extra.get("sequential"):
        return _sequential(o)
    import drift
    from drift.cli.runs import run_cases

    job = jobs.plan(o)

    def work(todo, append) -> None:  # the model loads only once the log and --out are checked
        model = drift.load_model(o.model.model, device=o.model.device, dtype=o.model.dtype)
        jobs.run(job, model, todo, append, progress=o.progress)

    result = run_cases(o.out, job.config, job.cases, work, restart=o.output.restart, pool=job.pool)
    print(summary_table(result["summary"]))
    print(f"wrote {o.out}")
    return 0


def _sequential(o: O.Options) -> int:
    """``eval --sequential``: one run of stacked edits; the weights are restored at the end."""
    if o.editor.editor == "none":
        raise ValueError("--sequential needs an editor (e.g. --editor memit), not --editor none")
    import torch

    import drift
    from drift.cli import jobs
    from drift.cli.runs import set_aside
    from drift.editors import get_compute
    from drift.evaluation.sequential import sequential_edits
    from drift.util.store import save_json

    job = jobs.plan(o)
    marks = sorted(set(o.extra["checkpoints"]) | {len(job.cases)})
    compute = get_compute(job.editor.editor, drop_rate=job.editor.dr, seed=o.run.seed, **job.overrides)
    spec = job.spec.as_kind("sequential", checkpoints=marks, batch_edits=o.extra["batch_edits"])
    config = spec.config
    claim(o.out, config, o.output.restart)
    # the stacked edits so far, saved after each batch: a rerun of the same run resumes there
    state = o.out.with_name(f"{o.out.name}.partial-{spec.key}.pt")
    if o.output.restart and state.exists():
        print(f"--restart: the earlier {state} is kept as {set_aside(state)}", file=sys.stderr)
    model = drift.load_model(o.model.model, device=o.model.device, dtype=o.model.dtype)
    torch.manual_seed(o.run.seed)
    try:
        rows = sequential_edits(
            model,
            job.cases,
            compute,
            checkpoints=marks,
            batch=o.extra["batch_edits"],
            progress=o.progress,
            scoring=o.scoring.scoring,
            pool=o.scoring.pool,
            state=state,
        )
    except KeyboardInterrupt:
        saved = f"the edits finished so far are saved in {state}" if state.exists() else "no edit finished"
        raise KeyboardInterrupt(saved) from None
    save_json(o.out, {"config": config, "checkpoints": rows})
    state.unlink(missing_ok=True)
    for row in rows:
        print(f"after {row['n_edits']} edits:")
        print(summary_table(row["summary"]))
    print(f"wrote {o.out}")
    return 0
