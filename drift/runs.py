"""Runs: one configuration evaluated case by case, logged so that no finished case is ever lost.

Every entry point that evaluates many cases (``eval``, ``merge``, ``compare``, ``sweep``,
``sequential`` and the analysis scripts) rests on this module, and every file a command writes so
that a rerun resumes is defined here:

=====================  ===================================  =============================================
run state              written by                           on disk
=====================  ===================================  =============================================
:class:`CaseLog`       ``eval``, ``audit``, analyses         ``OUT.partial.jsonl``: a header line
                       (``stats_choice``)                    ``{"drift_run", "key", "config"}``, then one
                                                             line per finished case
:class:`ChunkLogs`     ``sweep`` (and ``sadr``'s grid)       ``OUT/.parts/NAME/00010.jsonl``: one
                                                             :class:`CaseLog` per chunk of a run
:class:`CaseFiles`     ``trace``                             ``OUT/.partial-KEY/``: ``config.json`` and
                                                             one pickle per case
:class:`RecordLog`     ``sequential``                        ``OUT/sequential-runs.jsonl``: one line
                                                             ``{"key", "config", ...}`` per finished run
:func:`save_state`     ``sequential_edits(state=PATH)``      one pickle ``{"run_id", "n_done", "rows",
                       (``sequential``: ``.partial-KEY/``)   "weights"}``, rewritten after each batch
:func:`write_results`  ``eval``, ``merge``, ``sweep``        ``OUT.json``: ``{"config", "key", "label",
                                                             "summary", "cases"}``, the finished run
=====================  ===================================  =============================================

Logs are appended a line at a time (a line cut by a kill is skipped or repaired); every other file
is written whole and atomically (:func:`drift.store.save_json`, :func:`drift.store.save_object`).

- :func:`run_key` — one canonical key of a configuration (a results file, a log and a sweep's
  run agree on it); :func:`run_label` — a readable name derived from the same configuration;
  :func:`run_config` — the one builder of every command's configuration.
- :class:`CaseLog` — an append-only JSON-lines log of one configuration's finished cases. It is
  locked while a process writes it, refuses a configuration other than its own (``restart=True``
  sets the old log aside instead), and repairs a last line cut by a kill or a full disk before
  appending.
- :func:`finished_rows` / :func:`join` — the finished cases of logs and results files of one
  configuration, checked to be one configuration; :func:`write_results` the results file.
- :func:`chunks` — a run cut into pieces of cases (what a sweep hands its workers).
- :func:`claim_out` / :func:`set_aside` — an ``--out`` checked before a run writes it, and what
  ``--restart`` does with a results file, log or chunk folder of another configuration: moved to
  ``PATH.aside-TIME``.
- :class:`Stat` / :func:`stats` — the typed view of a summary: mean, 95% CI, cases, prompts.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> config = {"editor": "rome", "data": "builtin"}
    >>> with CaseLog(folder / "r.json.partial.jsonl", config) as log:
    ...     log.append({"case_id": "0", "metrics": {"ES": 100.0}})
    >>> with CaseLog(folder / "r.json.partial.jsonl", config) as log:   # resumed: case 0 is done
    ...     sorted(log.rows)
    ['0']
    >>> other = config | {"editor": "memit"}
    >>> with CaseLog(folder / "r.json.partial.jsonl", other):  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    ...     pass
    Traceback (most recent call last):
    ...
    drift.runs.RunConflict: ...r.json.partial.jsonl holds 1 finished case(s) of another configuration
    (editor: 'rome' here, 'memit' asked); pass --restart to set it aside and start over, ...
    >>> run_label({"editor": "rome", "sadr": 0.01, "steps": 80})
    'rome+SADR(γ=0.01) 80 steps'
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from filelock import FileLock, Timeout

from drift.store import CorruptCacheError, load_object, save_json, save_object

FORMAT = 1  # the header's "drift_run" value; a header without it has no format (and maybe no configuration)
# keys of a configuration that do not change any case's result: a shard's finished cases are the
# whole run's cases, so logs of different shards (or chunks) of one run join, and a run whose
# --limit grew keeps the cases it has; "provenance" (:func:`provenance`) says what ran it
NOT_IN_KEY = ("shard", "chunk", "limit", "provenance")
NAMED = ("data", "ppl", "references")  # input files: recorded (and keyed) by name, beside their digest


class RunConflict(ValueError):
    """A log or results file belongs to another configuration, or another process writes it."""


def run_key(config: dict) -> str:
    """The canonical key of a configuration: 16 hex digits of the SHA-256 of its JSON with sorted
    keys, without the entries that only say which part of the cases a process does.

    >>> run_key({"editor": "rome", "shard": "1/2"}) == run_key({"editor": "rome"})
    True
    >>> run_key({"data": "/there/d.json"}) == run_key({"data": "d.json"})   # files by name
    True
    """
    kept = {k: (file_name(v) if k in NAMED else v) for k, v in config.items() if k not in NOT_IN_KEY}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


def run_label(config: dict) -> str:
    """A short name for a run from its configuration: editor and the options that change it."""
    name = str(config.get("editor", "?"))
    if config.get("sadr") is not None:
        name += (
            f"+SADR(γ={config['sadr']:g}" + (", all heads" if config.get("sadr_heads") == "all" else "") + ")"
        )
    if config.get("dr"):
        name += f" DR(p={config['dr']:g})"
    if config.get("steps") is not None:
        name += f" {config['steps']} steps"
    if config.get("dtype"):  # only half-precision runs carry it
        name += f" {config['dtype']}"
    for k, v in sorted((config.get("hp") or {}).items()):
        name += f" {k}={v}"
    return name


def run_config(options, editor=None, *, kind: str = "eval", **extra) -> dict:
    """The configuration of a run: what its results depend on, whose :func:`run_key` names its
    log and results file. The one builder of every command's configuration: ``options`` is a
    :class:`drift.options.Options`, ``editor`` its editor options resolved (``--sadr`` alone made
    the paper's γ and steps; default: as given). ``kind``:

    - ``"eval"``: one ``eval`` (or ``audit``, ``sweep`` run) configuration;
    - ``"sequential"``: ``eval --sequential`` (``extra``: ``checkpoints``, ``batch_edits``);
    - any other: the data, model, editor and scoring of an analysis, with ``extra`` its own entries.

    Entries that were added to drift later (``dtype``, ``steps``, ``dr``, ``sadr``, ``hp``) appear
    only when set, so the keys of runs made before them stay as they were. Input files are
    recorded by name (their digest beside them), never by a path of the machine; ``provenance``
    (:func:`provenance`: drift's version and commit, device, libraries) is outside the key.

    >>> from drift.options import Options, EditorOptions
    >>> c = run_config(Options(editor=EditorOptions(editor="rome", steps=80)))
    >>> c["editor"], c["steps"], c["data"], c["sampling"] is not None
    ('rome', 80, 'builtin', True)
    """
    from drift.models import DEFAULT_MODEL

    o = options
    e = editor if editor is not None else o.editor
    data = str(o.data.data)
    model = o.model.model or DEFAULT_MODEL
    half = {"dtype": o.model.dtype} if o.model.dtype not in (None, "fp32") else {}  # fp32 keys unchanged
    hp = {k: repr(v) for k, v in sorted(e.hp.items())} if e.hp else None
    if kind == "sequential":
        return {
            "data": file_or_name(data),
            "data_sha256": digest_of(data),
            "limit": o.data.limit,
            "editor": e.editor,
            "model": model,
            "seed": o.run.seed,
            "dr": e.dr,
            "sequential": True,
            "batch_edits": extra["batch_edits"],
            "checkpoints": extra["checkpoints"],
            "sadr": e.sadr,
            "sadr_heads": e.sadr_heads if e.sadr is not None else None,
            "steps": e.steps,
            "hp": hp,
            "scoring": o.scoring.scoring,
            "pool": o.scoring.pool,
            **half,
            "provenance": provenance(o, data),
        }
    s = o.scoring
    config: dict = {"data": file_or_name(data), "editor": e.editor, "model": model, "seed": o.run.seed}
    if kind == "eval":
        config |= {"fluency": s.fluency is not None, "ppl": file_or_name(s.ppl)}
    config |= {"scoring": s.scoring}
    if kind == "eval":
        config["pool"] = s.pool
    config["data_sha256"] = digest_of(data)  # a case file edited since a run began: another run
    config["limit"] = o.data.limit  # not in the key (a run whose limit grew keeps its cases)
    if kind == "eval":
        config["forms"] = {"fluency": s.fluency, "ppl": s.ppl_form, "res": s.res}  # drift/metrics.py
        if s.references is not None:
            config["references"] = file_or_name(s.references)
        if s.ppl:
            config["ppl_sha256"] = digest_of(s.ppl)
    if e.sadr is not None:
        config |= {"sadr": e.sadr, "sadr_heads": e.sadr_heads}
    if e.steps is not None:
        config["steps"] = e.steps
    if e.dr is not None:
        config["dr"] = e.dr
    config |= half
    if hp:
        config["hp"] = hp
    if o.data.shard is not None:
        config["shard"] = o.data.shard
    if e.editor != "none" or (kind == "eval" and s.fluency is not None):  # depends on sampled text
        from drift.editors.stats import CORPUS_VERSION

        config["sampling"] = CORPUS_VERSION
    return config | extra | {"provenance": provenance(o, data)}


def file_or_name(value: str | None) -> str | None:
    """A data or text file by its name, without the folders (so ``d.json`` and ``/here/d.json``
    are one configuration, and no path of the machine is recorded: the file's digest, beside it
    in a configuration, says what it held); a name such as ``builtin`` as given."""
    return file_name(value)


def file_name(value):
    """The last part of a path given as text (``"/a/b/d.json"`` → ``"d.json"``); anything else
    (``None``, ``"builtin"``, a number) as given."""
    if isinstance(value, str) and ("/" in value or os.sep in value):
        return Path(value).name
    return value


def provenance(options=None, data: str | None = None, **extra) -> dict:
    """What ran a run, recorded in its configuration (outside its :func:`run_key`, so a run
    resumes under another commit or machine): drift's version and commit (``dirty``: the
    ``drift/`` package differs from it; a run of an extracted commit, as ``scripts/eval_points.sh``
    makes, names it in ``DRIFT_SOURCE_COMMIT``; ``"unknown"`` outside a git checkout), device,
    dtype, ``--edit-batch``, Python, torch, transformers and TransformerLens versions, the key
    statistics' corpus and the data by name and digest. ``options``: a
    :class:`drift.options.Options` (its model and run groups); ``extra``: more entries.

    >>> p = provenance(data="builtin")
    >>> sorted(p) == sorted(PROVENANCE_FIELDS), p["data"]["name"], len(p["data"]["sha256"])
    (True, 'builtin', 16)
    """
    import platform

    from drift.models import default_device

    model = getattr(options, "model", None)
    run = getattr(options, "run", None)
    device = getattr(model, "device", None) or default_device()
    out = {"drift": _code_version(), **_source()}
    out["device"] = _device_name(device)
    out["dtype"] = getattr(model, "dtype", None) or "fp32"
    out["edit_batch"] = getattr(run, "edit_batch", None)
    if out["edit_batch"] is None:  # --edit-batch unset: what drift.editors.target.auto_edit_batch takes
        from drift.editors.target import CPU_EDIT_BATCH

        out["edit_batch"] = (
            CPU_EDIT_BATCH if str(device).startswith("cpu") else "auto (the GPU's free memory)"
        )
    out["python"] = platform.python_version()
    out |= _library_versions()
    out["stats_corpus"] = _stats_corpus()
    out["data"] = None if data is None else {"name": file_name(str(data)), "sha256": _digest_or_none(data)}
    return out | extra


PROVENANCE_FIELDS = (
    "drift", "commit", "dirty", "device", "dtype", "edit_batch", "python",
    "torch", "transformers", "transformer_lens", "stats_corpus", "data",
)  # fmt: skip


def _code_version() -> str:
    import drift

    return drift.__version__


def _digest_or_none(data) -> str | None:
    try:
        return digest_of(data)
    except OSError:
        return None


def _source() -> dict:
    """``{"commit", "dirty"}`` of the drift package that runs."""
    import subprocess

    package = Path(__file__).resolve().parent
    pinned = os.environ.get("DRIFT_SOURCE_COMMIT")
    try:
        top = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout.split()  # fmt: skip
        if len(top) == 2 and Path(top[0]).resolve() == package.parent:
            changed = subprocess.run(
                ["git", "-C", top[0], "status", "--porcelain", "--untracked-files=no", "--", "drift"],
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout.strip()  # fmt: skip
            return {"commit": top[1], "dirty": bool(changed)}
    except (OSError, subprocess.SubprocessError):
        pass
    if pinned:  # an extracted commit's package (git archive): exactly that commit
        return {"commit": pinned, "dirty": False}
    return {"commit": "unknown", "dirty": "unknown"}


def _device_name(device) -> str:
    import torch

    name = str(device)
    if name.startswith("cuda") and torch.cuda.is_available():
        return f"{name} ({torch.cuda.get_device_name(torch.device(name))})"
    return name


def _library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for key, dist in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("transformer_lens", "transformer-lens"),
    ):
        try:
            out[key] = version(dist)
        except PackageNotFoundError:
            out[key] = None
    return out


def _stats_corpus() -> dict:
    """The default key-statistics corpus (:func:`drift.editors.stats.default_sequences`): its
    source, size and version (an editor given its own ``stats_texts`` records them in ``hp``)."""
    from importlib.metadata import PackageNotFoundError, version

    from drift.editors import stats

    try:
        source = f"{stats.PROSE_PACKAGE} {version(stats.PROSE_PACKAGE)} novels"
    except PackageNotFoundError:
        source = "sampled by the model (the prose package is not installed)"
    return {
        "source": source,
        "sequences": stats.DEFAULT_SEQUENCES,
        "tokens_each": stats.DEFAULT_SEQ_LEN,
        "version": stats.CORPUS_VERSION,
    }


def digest_of(source: str | os.PathLike) -> str:
    """16 hex digits of the SHA-256 of a file's bytes (``"builtin"``: drift's own case file), so
    that a run is keyed by what its inputs hold, not by their names.

    >>> len(digest_of("builtin"))
    16
    """
    if str(source) == "builtin":
        from importlib import resources

        data = resources.files("drift").joinpath("cases/builtin.json").read_bytes()
        return hashlib.sha256(data).hexdigest()[:16]
    h = hashlib.sha256()
    with open(source, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:16]


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether two paths name one file (the same path spelled differently, a link, a hard link)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def refuse_same_files(outputs: dict[str, Path | str | None], inputs: dict[str, Path | str | None]) -> None:
    """A ``ValueError`` when an output (by option name) is the same file as an input: writing it
    would destroy the input (``--out`` equal to ``--data``)."""
    for out_name, out in outputs.items():
        for in_name, source in inputs.items():
            if out is None or source is None or str(source) == "builtin":
                continue
            if Path(source).is_file() and same_file(out, source):
                raise ValueError(
                    f"{out_name} {out} is the same file as {in_name} {source}; writing the results "
                    f"would destroy it, so choose another {out_name}"
                )


def claim_out(out: Path | str, config: dict, *, restart: bool, option: str = "--restart") -> Path | None:
    """Check that writing a run's results to ``out`` loses nothing: a results file of the same
    configuration (same :func:`run_key`) may be rewritten; anything else there (another
    configuration's results, a file drift did not write) is refused with a ``RunConflict``, or,
    with ``restart``, moved aside to ``OUT.aside-TIME`` (returned)."""
    out = Path(out)
    if not out.is_file():
        return None
    try:
        found = json.loads(out.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        found = None
    if isinstance(found, dict) and isinstance(found.get("config"), dict):
        if run_key(found["config"]) == run_key(config):
            return None
        cases = found.get("cases")
        n = f" of {len(cases)} case(s)" if isinstance(cases, list) else ""
        what = f"the finished results{n} of another configuration ({_difference(found['config'], config)})"
    else:
        what = "a file that is not a results file of drift"
    if not restart:
        raise RunConflict(
            f"{out} holds {what}; pass {option} to set it aside and start over, or choose another --out"
        )
    return set_aside(out)


def set_aside(path: Path | str) -> Path:
    """Move ``path`` (a file or a folder) to ``PATH.aside-TIME`` beside it, never over an earlier
    one (``PATH.aside-TIME-2``, ...), and return where it went: what ``--restart`` does with a
    results file, a log or a sweep's chunk logs that hold another configuration."""
    path = Path(path)
    stem = path.with_name(f"{path.name}.aside-{time.strftime('%Y%m%d-%H%M%S')}")
    aside, n = stem, 1
    while aside.exists():
        n += 1
        aside = stem.with_name(f"{stem.name}-{n}")
    os.replace(path, aside)
    return aside


def _difference(mine: dict, asked: dict) -> str:
    """The first entries in which two configurations differ, for an error message."""
    keys = sorted(
        k for k in set(mine) | set(asked) if k not in NOT_IN_KEY and mine.get(k, "∅") != asked.get(k, "∅")
    )
    why = {"data_sha256": " (the case file's contents changed)", "ppl_sha256": " (the --ppl file changed)"}
    return "; ".join(
        f"{k}{why.get(k, '')}: {mine.get(k, 'unset')!r} here, {asked.get(k, 'unset')!r} asked"
        for k in keys[:4]
    ) + (" ..." if len(keys) > 4 else "")


def _parse_lines(text: str) -> tuple[dict | None, list[dict]]:
    """A log's header (``None`` when absent or unreadable) and its finished case rows; a line cut
    by an interruption (or any line that is not a case row) is skipped."""
    header, rows = None, []
    for i, line in enumerate(text.splitlines()):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            continue
        if i == 0 and ("drift_run" in obj or "config_key" in obj):
            header = obj
        elif "case_id" in obj and "metrics" in obj:
            rows.append(obj)
    return header, rows


class CaseLog:
    """The append-only log of one configuration's finished cases (a context manager: it holds the
    log's lock while open).

    Args:
        path: the log (JSON lines; created with its header when absent).
        config: the configuration whose cases it holds.
        restart: when the log holds another configuration (or an earlier format), move it aside to
            ``PATH.aside-TIME`` and start a new one instead of refusing.
        option: the option that means ``restart`` for the user, named in errors.
    """

    def __init__(self, path: Path | str, config: dict, *, restart: bool = False, option: str = "--restart"):
        self.path = Path(path)
        self.config = dict(config)
        self.key = run_key(config)
        self.restart = restart
        self.option = option
        self.rows: dict[str, dict] = {}
        self._lock = FileLock(str(self.path) + ".lock", timeout=0)
        self.aside: Path | None = None  # where a conflicting log was moved

    def __enter__(self) -> "CaseLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunConflict(
                f"{self.path} is being written by another process; wait for it to finish or "
                "choose another --out"
            ) from None
        try:
            self._open()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def _open(self) -> None:
        if self.path.exists():
            raw = self.path.read_bytes()
            cut = raw.rfind(b"\n") + 1
            if cut < len(raw):  # a last line cut by a kill or a full disk: drop it
                with self.path.open("r+b") as f:
                    f.truncate(cut)
                raw = raw[:cut]
            header, rows = _parse_lines(raw.decode("utf-8", errors="replace"))
            same = header is not None and (
                header.get("key") == self.key  # or a log of an earlier drift, which keyed paths
                or (isinstance(header.get("config"), dict) and run_key(header["config"]) == self.key)
            )
            if same and not self.restart:
                self.rows = {str(r["case_id"]): r for r in reversed(rows)}  # the first row of a case wins
                started = header["config"].get("provenance", "unknown") if "config" in header else "unknown"
                if rows and "provenance" in self.config and started != self.config["provenance"]:
                    # resumed by another commit, machine or library: say what began it
                    self.config["provenance"] = self.config["provenance"] | {"started": started}
                return
            if rows:  # finished cases of another configuration, or ones to start over from
                if not self.restart:
                    if header is None or "config" not in header:
                        why = "no configuration (its header has none)"
                    else:
                        why = f"another configuration ({_difference(header['config'], self.config)})"
                    raise RunConflict(
                        f"{self.path} holds {len(rows)} finished case(s) of {why}; pass {self.option} "
                        "to set it aside and start over, or choose another --out"
                    )
                self.aside = set_aside(self.path)
        header = {"drift_run": FORMAT, "key": self.key, "config": self.config}
        self.path.write_text(json.dumps(header) + "\n")
        self.rows = {}

    def append(self, row: dict) -> None:
        """Add one finished case (a dict with ``case_id``), flushed to disk before returning."""
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.rows.setdefault(str(row["case_id"]), row)

    def remaining(self, cases: Sequence) -> list:
        """The cases (objects with ``case_id``) not finished yet, in their order."""
        return [c for c in cases if str(c.case_id) not in self.rows]

    def finish(self, out: Path | str, case_ids: Sequence[str], pool: str, **extra) -> dict:
        """Write the results file of the cases ``case_ids`` (all finished) and remove the log."""
        missing = [i for i in map(str, case_ids) if i not in self.rows]
        if missing:
            raise RuntimeError(
                f"{self.path}: {len(missing)} case(s) unfinished ({', '.join(missing[:5])}); "
                "run the same command again to finish them"
            )
        result = write_results(out, self.config, [self.rows[i] for i in map(str, case_ids)], pool, **extra)
        self.path.unlink()
        Path(str(self.path) + ".lock").unlink(missing_ok=True)
        return result


class CaseFiles:
    """Per-case results that are not JSON (tensors of a trace), for ``trace``: one file per case
    in a folder named by the configuration's key, ``FOLDER/.partial-KEY/HASH.pt`` (``HASH``: 16 hex
    digits of the SHA-256 of the case id; :func:`drift.store.save_object`), with the
    configuration beside them in ``config.json`` (``{"drift_run", "key", "config"}``). A damaged
    file is reported and its case runs again; ``restart=True`` empties the folder.

    >>> import tempfile, pathlib, torch
    >>> files = CaseFiles(pathlib.Path(tempfile.mkdtemp()), {"editor": "rome"})
    >>> files.save("7", {"scores": torch.ones(2)})
    >>> files.load("7")["scores"].tolist(), files.load("8")
    ([1.0, 1.0], None)
    """

    def __init__(self, folder: Path | str, config: dict, *, restart: bool = False):
        self.key = run_key(config)
        self.folder = Path(folder) / f".partial-{self.key}"
        if restart and self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        save_json(self.folder / "config.json", {"drift_run": FORMAT, "key": self.key, "config": config})

    def path(self, case_id: str) -> Path:
        return self.folder / f"{hashlib.sha256(str(case_id).encode()).hexdigest()[:16]}.pt"

    def load(self, case_id: str) -> object | None:
        """The case's saved result, or ``None`` when it has none (or only a damaged one)."""
        import warnings

        path = self.path(case_id)
        if not path.exists():
            return None
        try:
            return load_object(path)
        except CorruptCacheError as e:
            warnings.warn(f"drift: {e}; running case {case_id} again")
            return None

    def save(self, case_id: str, result: object) -> None:
        save_object(self.path(case_id), result)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class ChunkLogs:
    """The case logs of one run cut into chunks of cases, for ``sweep`` (and ``sadr``'s grid,
    which is a sweep): ``OUT/.parts/NAME/FIRST.jsonl``, one :class:`CaseLog` per chunk, named by
    the position of the chunk's first case in the run (``00010.jsonl``; the configuration in its
    header carries ``"chunk"``, which is outside the key), and ``earlier.jsonl``, the rows that a
    results file of the same configuration already held (a run whose ``--limit`` grew). When all
    are done they are joined into ``OUT/NAME.json`` (:func:`write_results`) and removed.

    >>> import tempfile, pathlib
    >>> logs = ChunkLogs(pathlib.Path(tempfile.mkdtemp()), "rome")
    >>> with CaseLog(logs.path(10), {"editor": "rome", "chunk": "00010"}) as log:
    ...     log.append({"case_id": "10", "metrics": {"ES": 100.0}})
    >>> [(p.name, len(rows)) for p, (config, rows) in logs.read().items()]
    [('00010.jsonl', 1)]
    >>> logs.remove(); logs.paths()
    []
    """

    ROOT = ".parts"

    def __init__(self, out: Path | str, name: str):
        self.root = Path(out) / self.ROOT
        self.folder = self.root / name

    def path(self, first: int) -> Path:
        """The log of the chunk whose first case is the run's ``first``-th (from 0)."""
        return self.folder / f"{first:05d}.jsonl"

    def paths(self) -> list[Path]:
        """The run's logs (none when its folder is absent)."""
        return sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else []

    def read(self, command: str = "sweep") -> dict[Path, tuple[dict, list[dict]]]:
        """Each log's configuration and finished rows (each read once, by :func:`join`)."""
        return {p: join([p], command) for p in self.paths()}

    def carry(self, config: dict, rows: Sequence[dict]) -> tuple[Path, list[dict]]:
        """Add the finished ``rows`` of ``config`` that ``earlier.jsonl`` lacks to it; its path
        and every row it holds."""
        with CaseLog(self.folder / "earlier.jsonl", config) as log:
            for row in rows:
                if row["case_id"] not in log.rows:
                    log.append(row)
            return log.path, list(log.rows.values())

    def remove(self) -> None:
        """Remove the run's logs (only ever a folder inside ``OUT/.parts/``)."""
        if self.folder.resolve().parent == self.root.resolve():
            shutil.rmtree(self.folder, ignore_errors=True)


def read_records(path: Path | str) -> dict[str, dict]:
    """The records of a JSON-lines log written by :func:`append_record`, by their ``"key"``; a
    line cut by an interruption is skipped (that configuration simply runs again)."""
    records: dict[str, dict] = {}
    if Path(path).exists():
        for line in Path(path).read_text().splitlines():
            try:
                rec = json.loads(line)
                records[rec["key"]] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return records


def append_record(path: Path | str, record: dict) -> None:
    """Append one finished configuration's ``record`` (with a ``"key"``) to a JSON-lines log, on
    a line of its own even after a line that a kill cut short (which stays, unread)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as f:
        f.seek(0, os.SEEK_END)
        cut = False
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            cut = f.read(1) != b"\n"
        f.write((("\n" if cut else "") + json.dumps(record) + "\n").encode())


class RecordLog:
    """The finished runs of a command made of whole runs that are not logged case by case, for
    ``sequential`` (its attenuation curves and drop-rate sweep): ``FOLDER/NAME.jsonl``, one JSON
    line per finished run, ``{"key": run_key(config), "config", ...}`` (:func:`append_record`),
    and beside it ``FOLDER/.partial-KEY/``, the work folder of a run not finished yet (its
    :func:`save_state` file, ``state.pt``, and whatever else the run keeps there).
    ``restart=True`` removes the log and every work folder in ``FOLDER``.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> runs = RecordLog(folder / "sequential-runs.jsonl")
    >>> key = run_key({"editor": "memit"})
    >>> runs.work(key).mkdir()                   # a run in progress keeps its state there
    >>> runs.add({"key": key, "config": {"editor": "memit"}, "checkpoints": []})
    >>> list(RecordLog(runs.path).done) == [key], runs.work(key).exists()
    (True, False)
    """

    def __init__(self, path: Path | str, restart: bool = False):
        self.path = Path(path)
        if restart:
            if self.path.exists():
                self.path.unlink()
            for work in self.path.parent.glob(".partial-*"):
                shutil.rmtree(work, ignore_errors=True)
        self.done: dict[str, dict] = read_records(self.path)

    def work(self, key: str) -> Path:
        """The work folder of the unfinished run ``key``."""
        return self.path.parent / f".partial-{key}"

    def add(self, record: dict) -> None:
        """Keep a finished run's ``record`` (saved before this returns) and remove its work folder."""
        self.done[record["key"]] = record
        append_record(self.path, record)
        shutil.rmtree(self.work(record["key"]), ignore_errors=True)

    def take_in(self, path: Path | str) -> int:
        """Add the records of another log of this kind (a ``--part`` process's) that this one
        lacks and whose key is their configuration's; how many records that log holds."""
        theirs = read_records(path)
        for key, rec in theirs.items():
            if key not in self.done and rec.get("key") == run_key(rec.get("config", {})):
                self.done[key] = rec
                append_record(self.path, rec)
        return len(theirs)


def save_state(path: Path | str, run_id: str, n_done: int, rows: list[dict], weights: dict) -> None:
    """Save the progress of a run of stacked edits (:func:`drift.sequential.sequential_edits` with
    ``state=PATH``; the ``sequential`` command's ``.partial-KEY/state.pt``), rewritten atomically
    after each batch: one pickle (:func:`drift.store.save_object`) of ``{"run_id": the run's key
    (its cases, checkpoints and batch), "n_done": edits applied, "rows": the finished checkpoints'
    rows, "weights": {(which, layer): the weight's current value} for every weight the edits
    touched}``.

    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "state.pt"
    >>> save_state(path, "abc", 2, [], {("mlp_out", 0): torch.zeros(2)})
    >>> load_state(path, "abc")["n_done"], load_state(path, "another run")
    (2, None)
    """
    save_object(Path(path), {"run_id": run_id, "n_done": n_done, "rows": rows, "weights": weights})


def load_state(path: Path | str | None, run_id: str) -> dict | None:
    """The progress :func:`save_state` saved for the run ``run_id``; ``None`` when there is none
    (no path, no file, another run's file, or a damaged one: the run starts over)."""
    if path is None or not Path(path).exists():
        return None
    try:
        saved = load_object(Path(path))
    except CorruptCacheError:
        return None
    if not isinstance(saved, dict) or saved.get("run_id") != run_id:
        return None
    return saved


def write_results(out: Path | str, config: dict, rows: Sequence[dict], pool: str, **extra) -> dict:
    """The results file of a run: ``{"config", "key", "label", "summary", "cases", ...extra}``,
    written atomically."""
    from drift.metrics import summarise

    result = {
        "config": config,
        "key": run_key(config),
        "label": run_label(config),
        "summary": summarise([r["metrics"] for r in rows], pool),
        "cases": list(rows),
        **extra,
    }
    save_json(Path(out), result)
    return result


def read_any(path: Path | str, command: str = "merge") -> tuple[dict, list[dict]]:
    """The configuration and finished case rows of a results file or of a log; a ``ValueError``
    naming the file when it is neither, or when a log records no configuration."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{command}: {path} does not exist")
    text = path.read_text()
    if path.name.endswith(".jsonl"):
        header, rows = _parse_lines(text)
        if header is None or "config" not in header:
            raise ValueError(
                f"{command}: {path} records no configuration (its header has none); "
                "finish it with the eval command that wrote it, then merge the results file"
            )
        return header["config"], rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{command}: {path} is not a results JSON of `python -m drift eval` ({e})") from e
    missing = [k for k in ("config", "cases") if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(
            f"{command}: {path} is not a results JSON of `python -m drift eval` "
            f"(no {' or '.join(map(repr, missing))})"
        )
    return data["config"], data["cases"]


def join(paths: Iterable[Path | str], command: str = "merge") -> tuple[dict, list[dict]]:
    """One configuration and its finished cases (each once, the first found wins) from results
    files and logs of that configuration's parts; a ``RunConflict`` when they hold different
    configurations. The configuration returned has no ``shard``/``chunk`` entry."""
    config: dict | None = None
    rows: dict[str, dict] = {}
    for path in paths:
        cfg, found = read_any(path, command)
        cfg = {k: v for k, v in cfg.items() if k not in NOT_IN_KEY or k == "provenance"}
        for name in NAMED:  # a path recorded by an earlier drift: its name, as drift records it now
            if isinstance(cfg.get(name), str):
                cfg[name] = file_name(cfg[name])
        if config is None:
            config, first = cfg, path
        elif run_key(cfg) != run_key(config):
            raise RunConflict(
                f"{command}: {path} comes from a different configuration than {first} "
                f"({_difference(config, cfg)})"
            )
        for row in found:
            rows.setdefault(str(row["case_id"]), row)
    if config is None:
        raise ValueError(f"{command}: no inputs")
    return config, list(rows.values())


def coverage(
    parts: Sequence[tuple[Path | str, dict]], found: Iterable[str], command: str = "merge"
) -> tuple[list[str], str | None]:
    """What the parts of one run (each a path and the configuration it records) leave out:
    shards of the split that no part holds, and, when the run's case file is at hand and
    unchanged (its digest), the run's cases that no part finished. Returns the list of what is
    missing (empty: the run is complete) and a note when the cases could not be checked.
    A ``RunConflict`` when one shard is given twice or the parts split the cases differently."""
    seen: dict[str, str] = {}
    counts, limits, whole = set(), set(), False
    for path, cfg in parts:
        limits.add(cfg.get("limit"))
        shard = cfg.get("shard")
        if shard is None:
            whole = True
            continue
        if shard in seen:
            raise RunConflict(
                f"{command}: shard {shard} is given twice ({seen[shard]} and {path}); give each part once"
            )
        seen[shard] = str(path)
        counts.add(str(shard).partition("/")[2])
    if len(counts) > 1 or len(limits) > 1:
        raise RunConflict(
            f"{command}: the parts cut the cases differently (shards {sorted(seen)}, limits "
            f"{sorted(limits, key=str)}); merge the parts of one split"
        )
    missing: list[str] = []
    if counts and not whole:
        n = int(counts.pop())
        absent = [f"{i}/{n}" for i in range(1, n + 1) if f"{i}/{n}" not in seen]
        if absent:
            missing.append(f"shard(s) {', '.join(absent)}")
    config = dict(parts[0][1])
    data, digest = config.get("data"), config.get("data_sha256")
    if not digest or not isinstance(data, str):
        return missing, "the run records no digest of its case file, so its cases were not counted"
    if not (data == "builtin" or Path(data).is_file()):
        return missing, f"the case file {data} is not here, so the cases were not counted"
    if digest_of(data) != digest:
        return missing, f"the case file {data} changed since the run, so the cases were not counted"
    from drift.data import load_cases

    wanted = [c.case_id for c in load_cases(data, limit=config.get("limit"))]
    have = set(map(str, found))
    absent = [i for i in wanted if i not in have]
    if absent:
        more = " ..." if len(absent) > 5 else ""
        missing.append(f"{len(absent)} of {len(wanted)} case(s) ({', '.join(absent[:5])}{more})")
    return missing, None


def chunks(items: Sequence, size: int) -> list[list]:
    """``items`` cut into consecutive pieces of at most ``size`` (the last may be shorter).

    >>> chunks(list(range(5)), 2)
    [[0, 1], [2, 3], [4]]
    """
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@dataclass(frozen=True)
class Stat:
    """One metric of a summary: its mean, 95% CI, how many cases have it and how many prompts
    were pooled (``None`` for a per-case mean)."""

    mean: float
    ci: tuple[float, float]
    n: int
    k: int | None = None

    @property
    def half_width(self) -> float:
        lo, hi = self.ci
        return (hi - lo) / 2 if math.isfinite(lo) and math.isfinite(hi) else math.nan


def stats(summary: dict) -> dict[str, Stat]:
    """The typed view of a summary written by :func:`drift.metrics.summarise`.

    >>> s = stats({"ES": 90.0, "ES_ci": [80.0, 100.0], "ES_n": 10, "AvgS": 50.0})
    >>> s["ES"].half_width, s["ES"].n, s["AvgS"].n
    (10.0, 10, 0)
    """
    out = {}
    for name, value in summary.items():
        if name.endswith(("_ci", "_n", "_k")):
            continue
        lo, hi = summary.get(f"{name}_ci", (math.nan, math.nan))
        out[name] = Stat(float(value), (lo, hi), int(summary.get(f"{name}_n", 0)), summary.get(f"{name}_k"))
    return out
