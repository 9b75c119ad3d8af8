"""Sweeps: many ``eval`` runs, cut into chunks of cases, run on Ray workers or in this process.

A sweep is a small TOML file. Its top-level keys are ``eval`` options shared by every run; each
``[[run]]`` table adds or overrides options for one run, and a list value makes a grid (one run per
value; several lists multiply). ``hp`` is a table of the editor's hyper-parameters (``--hp``). The
keys map straight onto eval's option groups (:func:`drift.cli.options.from_table`): each value is
checked as the same option on the command line is, and a bad one is refused before torch loads::

    data = "builtin"            # any option of `python -m drift eval`, by its name
    limit = 20
    no_fluency = true
    chunk = 5                   # cases per task (sweep setting; default 10)

    [[run]]
    name = "rome"               # its results file: OUT/rome.json (default: from the options)
    editor = "rome"

    [[run]]
    editor = "rome"
    sadr = [1e-3, 1e-2]         # two runs
    steps = 80
    hp = { kl_factor = 0.0625 }

``python -m drift sweep SPEC --out-dir DIR`` runs it. Every run is planned first (a bad option fails
before anything starts), then its cases are cut into chunks; each chunk is a task that loads the
model once per worker process and logs each finished case to ``DIR/.parts/NAME/CHUNK.jsonl``
(:class:`drift.cli.runs.ChunkLogs`: a :class:`drift.cli.runs.RecordLog` per chunk). When a run's chunks
are all done they are joined into ``DIR/NAME.json``, the same results file ``eval`` writes, ready
for ``compare``. A stopped sweep resumes where it stopped: finished runs are kept, and unfinished
chunks do only their missing cases. Ray retries a task whose worker died; the retry, too, starts
from the chunk's log.

Engines: ``ray`` (default) starts a local Ray instance with one worker per core, or, with
``--device cuda``, ``--per-gpu K`` workers sharing each GPU (fractional GPUs); ``--address``
joins an existing cluster instead. ``local`` runs the chunks one after another in this process
(no Ray needed). Both give the same rows: a case's result depends only on the model, the
configuration and the case.

Example (in this process, on the tiny model):
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> runs = expand({"data": "builtin", "limit": 2, "no_fluency": True, "model": TINY,
    ...                "run": [{"name": "none"}, {"name": "product", "scoring": "product"}]})
    >>> [r.name for r in runs]
    ['none', 'product']
    >>> results = execute(runs, out, engine="local", chunk=1, progress=False)
    >>> sorted(p.name for p in out.glob("*.json")), results["product"]["config"]["scoring"]
    (['none.json', 'product.json'], 'product')
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from drift.cli import options as O

if TYPE_CHECKING:
    from drift.cli.runs import ChunkLogs

SETTINGS = ("chunk",)  # sweep-level keys that are not eval options
NOT_IN_SPEC = ("out", "restart", "sequential", "quiet", "device")


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its name (the results file's stem) and its ``eval`` options."""

    name: str
    options: dict = field(default_factory=dict)

    def namespace(self, out: Path | str, device: str | None = None):
        """The run's ``eval`` options as parsed values (the keys checked as ``eval`` checks them),
        writing ``OUT/NAME.json``, quietly, on ``device``; a ``ValueError`` naming the run and the
        option otherwise.

        >>> RunSpec("r", {"editor": "rome", "hp": {"lr": 0.1}}).namespace("out").hp
        [('lr', 0.1)]
        """
        p = O.parser("sweep")
        O.add_eval(p)
        O.add_verbosity(p, top=True)
        fixed = {"out": str(Path(out) / f"{self.name}.json"), "quiet": True, "device": device}
        return O.from_table(p, self.options | fixed, where=f"sweep: run {self.name!r}: ")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "run"


def expand(spec: dict) -> list[RunSpec]:
    """The runs of a parsed sweep file: shared options, each ``[[run]]``, grids multiplied out."""
    shared = {k: v for k, v in spec.items() if k not in ("run", *SETTINGS)}
    tables = spec.get("run") or [{}]
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError("sweep: 'run' must be a list of tables ([[run]] in TOML)")
    out: list[RunSpec] = []
    for i, table in enumerate(tables):
        options = shared | {k: v for k, v in table.items() if k != "name"}
        for where in (shared, table):
            if not isinstance(where.get("hp", {}), dict):
                raise ValueError(
                    f"sweep: run {i + 1}: hp must be a table (hp = {{ lr = 0.5 }}), got {where['hp']!r}"
                )
        hp = dict(shared.get("hp") or {}) | dict(table.get("hp") or {})
        bad = sorted(set(options) & set(NOT_IN_SPEC))
        if bad:
            raise ValueError(f"sweep: run {i + 1}: {bad} are set by the sweep itself, not per run")
        if "name" in table and (not isinstance(table["name"], str) or not table["name"].strip()):
            raise ValueError(f"sweep: run {i + 1}: name must be a non-empty string, got {table['name']!r}")
        grid = {k: v for k, v in options.items() if isinstance(v, list) and k != "hp"}
        grid |= {f"hp.{k}": v for k, v in hp.items() if isinstance(v, list)}
        empty = [k.replace("hp.", "hp ") for k, v in grid.items() if not v]
        if empty:
            raise ValueError(
                f"sweep: run {i + 1}: {', '.join(map(repr, empty))} is an empty list, which would make "
                "no run; give at least one value"
            )
        for values in itertools.product(*grid.values()) if grid else [()]:
            chosen = dict(zip(grid, values))
            opts = {k: chosen.get(k, v) for k, v in options.items() if k != "hp"}
            run_hp = {k: chosen.get(f"hp.{k}", v) for k, v in hp.items()}
            if run_hp:
                opts["hp"] = run_hp
            name = table.get("name") or str(opts.get("editor", "none"))
            if chosen:
                name += "-" + "-".join(f"{k.removeprefix('hp.')}={v}" for k, v in chosen.items())
            out.append(RunSpec(slug(name), opts))
            if out[-1].name.startswith("."):
                raise ValueError(f"sweep: run {i + 1}: the name {name!r} would be a hidden or parent folder")
    names = [r.name for r in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"sweep: runs named {twice} more than once; give each [[run]] its own name")
    return out


def load(path: Path | str) -> tuple[list[RunSpec], dict]:
    """A sweep file's runs and its sweep-level settings (``chunk``), every run's options checked."""
    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"sweep: {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"sweep: {path} is not valid TOML ({e})") from None
    runs = expand(spec)
    for run in runs:
        run.namespace(".")
    p = O.parser("sweep")
    O.add_engine(p)  # a setting is checked as the sweep command's option of that name
    settings = {k: spec[k] for k in SETTINGS if k in spec}
    checked = O.from_table(p, settings, where="sweep: ")
    return runs, {k: getattr(checked, k) for k in settings}


def _job(run: RunSpec, out: Path, device: str | None):
    """The ``eval`` job of one run (the options checked exactly as ``eval`` checks them)."""
    from drift.cli import jobs

    options = O.Options.of(run.namespace(out, device), "eval")
    try:
        return jobs.plan(options)
    except ValueError as e:
        raise ValueError(f"sweep: run {run.name!r}: {e}") from e


_MODELS: dict = {}  # per worker process: the model of each (name, device, dtype), loaded once
_JOBS: dict = {}  # per worker process: each run's planned job


def run_chunk(run: RunSpec, out: str, device: str | None, case_ids: list[str], log: str) -> int:
    """One task: evaluate the cases ``case_ids`` of ``run`` that ``log`` has not finished."""
    import drift
    from drift.cli import jobs
    from drift.cli.runs import RecordLog

    job_key = (run.name, json.dumps(run.options, sort_keys=True), out, device)
    if job_key not in _JOBS:  # planned once per worker (a large case file is read once)
        _JOBS[job_key] = _job(run, Path(out), device)
    job = _JOBS[job_key]
    m = job.options.model
    key = (m.model, device, m.dtype)
    if key not in _MODELS:
        _MODELS.clear()  # one model at a time in a worker
        _MODELS[key] = drift.load_model(m.model, device=device, dtype=m.dtype)
    wanted = set(case_ids)
    with RecordLog(log, job.config | {"chunk": Path(log).stem}) as case_log:
        todo = case_log.remaining([c for c in job.cases if c.case_id in wanted])
        return jobs.run(job, _MODELS[key], todo, case_log.append, progress=False)


@dataclass
class _Run:
    spec: RunSpec
    job: object
    parts: ChunkLogs  # the run's chunk logs
    pieces: list[tuple[Path, list[str]]]  # what is left: (log, case ids)


def _prepare(run: RunSpec, out: Path, chunk: int, device: str | None, restart: bool) -> _Run | None:
    """The run's chunks still to do (``None`` when its results file is finished). Cases finished
    in any earlier chunk log are left out, whatever the chunk size was then, and so are those of
    ``eval``'s own log of the same configuration (``OUT/NAME.json.partial.jsonl``)."""
    from drift.cli.runs import ChunkLogs, RunConflict, chunks, join, set_aside
    from drift.cli.spec import run_key

    job = _job(run, out, device)
    result = out / f"{run.name}.json"
    parts = ChunkLogs(out, run.name)
    key = run_key(job.config)
    carried: list[dict] = []  # finished rows of the same configuration (e.g. before --limit grew)
    if result.exists():
        config, rows = join([result], "sweep")
        wanted = {c.case_id for c in job.cases}
        beyond = sorted({r["case_id"] for r in rows} - wanted)
        if run_key(config) == key and not beyond and {r["case_id"] for r in rows} == wanted:
            return None
        if run_key(config) == key and not beyond:
            carried = rows  # a run whose --limit grew keeps its finished cases
        elif not restart:
            why = (
                f"{len(beyond)} finished case(s) this run does not cover (its limit shrank?)"
                if run_key(config) == key
                else "another configuration"
            )
            raise RunConflict(
                f"sweep: {result} holds {why} than run {run.name!r}; pass --restart to set it aside "
                "and redo the run, or give the run another name"
            )
        else:
            print(f"sweep: the earlier {result} is kept as {set_aside(result)}", file=sys.stderr)
    eval_log = out / f"{run.name}.json.partial.jsonl"  # `eval --out OUT/NAME.json`'s own log of it
    if not carried and eval_log.exists() and run_key((found := join([eval_log], "sweep"))[0]) == key:
        carried = [row for row in found[1] if row["case_id"] in {c.case_id for c in job.cases}]
    logged = parts.read("sweep")  # each chunk log read once
    stale = [p for p, (config, _) in logged.items() if run_key(config) != key]
    if stale and not restart:
        raise RunConflict(
            f"sweep: {parts.folder} holds finished cases of another configuration than run "
            f"{run.name!r}; pass --restart to set them aside, or give the run another name"
        )
    if stale:
        aside = set_aside(parts.folder)
        print(f"sweep: the earlier chunks of {run.name!r} are kept in {aside}", file=sys.stderr)
        logged = {}
    if carried:
        path, rows = parts.carry(job.config, carried)
        logged[path] = (job.config, rows)
    done = {row["case_id"] for _, rows in logged.values() for row in rows}
    position = {c.case_id: i for i, c in enumerate(job.cases)}
    left = [c.case_id for c in job.cases if c.case_id not in done]
    pieces = [(parts.path(position[ids[0]]), ids) for ids in chunks(left, chunk)]
    return _Run(run, job, parts, pieces)


def _finish(r: _Run, out: Path) -> dict:
    """Join a run's chunk logs into its results file (cases in the run's order) and remove them."""
    from drift.cli.runs import join, write_results

    config, rows = join(r.parts.paths(), "sweep")
    by_id = {row["case_id"]: row for row in rows}
    ordered = [by_id[c.case_id] for c in r.job.cases]
    result = write_results(out / f"{r.spec.name}.json", r.job.config, ordered, r.job.pool)
    r.parts.remove()
    return result


def execute(
    runs: Sequence[RunSpec],
    out: Path | str,
    *,
    chunk: int = 10,
    engine: str = "ray",
    address: str | None = None,
    workers: int | None = None,
    device: str | None = None,
    per_gpu: int = 4,
    restart: bool = False,
    progress: bool = True,
) -> dict[str, dict]:
    """Run a sweep's ``runs`` into ``out`` (one results file per run) and return the results by
    run name. See the module docstring for the engines and the files."""
    from tqdm.auto import tqdm

    if engine not in ("ray", "local"):
        raise ValueError(f"sweep: unknown engine {engine!r}; use 'ray' or 'local'")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prepared = {r.name: _prepare(r, out, chunk, device, restart) for r in runs}  # all checked first
    results = {  # finished earlier
        name: json.loads((out / f"{name}.json").read_text()) for name, p in prepared.items() if p is None
    }
    tasks = [(r, log, ids) for r in prepared.values() if r is not None for log, ids in r.pieces]
    bar = tqdm(total=sum(len(ids) for _, _, ids in tasks), unit="case", desc="sweep", disable=not progress)

    def finished(r: _Run, ids: list[str]) -> None:
        bar.update(len(ids))

    if engine == "local":
        for r, log, ids in tasks:
            run_chunk(r.spec, str(out), device, ids, str(log))
            finished(r, ids)
    else:
        _on_ray(tasks, out, device, address, workers, per_gpu, finished)
    bar.close()
    for name, r in prepared.items():
        if r is not None:
            results[name] = _finish(r, out)
    from drift.cli.runs import ChunkLogs

    root = out / ChunkLogs.ROOT
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    return results


def _on_ray(tasks, out: Path, device, address, workers, per_gpu, finished) -> None:
    """Run the tasks on Ray: a local instance (``workers`` processes, default one per core, or
    ``per_gpu`` per GPU) or the cluster at ``address``."""
    try:
        import ray
    except ImportError:
        raise ValueError(
            "sweep: Ray is not installed; `pip install drift[ray]`, or run with --engine local"
        ) from None
    gpu = bool(device) and str(device).startswith("cuda")
    threads = os.environ.get("DRIFT_THREADS", "1")  # one torch thread per worker: workers = cores
    started = not ray.is_initialized()
    if started:
        kw: dict = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
        if address is None:
            kw["num_cpus"] = workers or os.cpu_count() or 1
            # Ray lowers its workers' priority (nice 15) by default: on a shared machine they then
            # wait behind every other process. A sweep is the work itself, so run at normal priority.
            # The local instance starts with (and its workers inherit) this process's environment.
            saved = {k: os.environ.get(k) for k in ("RAY_worker_niceness", "DRIFT_THREADS")}
            os.environ.update(RAY_worker_niceness=saved["RAY_worker_niceness"] or "0", DRIFT_THREADS=threads)
            try:
                ray.init(**kw)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        else:  # a cluster's workers get the setting through Ray's runtime environment
            ray.init(address=address, runtime_env={"env_vars": {"DRIFT_THREADS": threads}}, **kw)
    try:
        if gpu:
            options = {"num_gpus": 1 / per_gpu, "num_cpus": 0}
        else:
            options = {"num_cpus": 1}
        remote = ray.remote(max_retries=3, max_calls=0, **options)(run_chunk)
        pending = {remote.remote(r.spec, str(out), device, ids, str(log)): (r, ids) for r, log, ids in tasks}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                r, ids = pending.pop(ref)
                try:
                    ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    for other in pending:
                        ray.cancel(other)
                    raise RuntimeError(f"sweep: run {r.spec.name!r} failed: {e.cause}") from e.cause
                finished(r, ids)
    finally:
        if started:
            ray.shutdown()
