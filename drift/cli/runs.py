"""Runs: one configuration evaluated case by case, logged so that no finished case is ever lost.

Every entry point that evaluates many cases (``eval``, ``merge``, ``compare``, ``sweep``,
``sequential`` and the analysis scripts) rests on this module, and every file a command writes so
that a rerun resumes is defined here:

Two classes hold every log (the one record format: JSON lines, a line appended and flushed as
each record finishes, a line cut by a kill skipped or repaired):

=====================  ===================================  =============================================
run state              written by                           on disk
=====================  ===================================  =============================================
:class:`RecordLog`     ``eval``, ``audit``, analyses         ``OUT.partial.jsonl``: a header line
(one run's cases)      (``stats_choice``), a sweep's chunk   ``{"drift_run", "key", "config"}``, then one
                       ``trace``                             line per finished case; ``trace``:
                                                             ``OUT/.partial-KEY.jsonl``, its rows naming
                                                             one pickle per case in ``OUT/.partial-KEY/``
:class:`RecordLog`     ``sequential``                        ``OUT/sequential-runs.jsonl``: no header, one
(runs)                                                       line ``{"key", "config", ...}`` per finished
                                                             run; ``OUT/.partial-KEY/``: a run's work
:class:`ChunkLogs`     ``sweep`` (and ``sadr``'s grid)       ``OUT/.parts/NAME/00010.jsonl``: one
                                                             :class:`RecordLog` per chunk of a run
=====================  ===================================  =============================================

Beside them, two files that are not logs: ``save_state``
(:func:`drift.evaluation.sequential.save_state`; ``sequential_edits(state=PATH)``, in
``sequential``'s ``.partial-KEY/``), one pickle ``{"run_id", "n_done", "rows", "weights"}``
rewritten after each batch, and :func:`write_results` (``eval``, ``merge``, ``sweep``),
``OUT.json``: ``{"config", "key", "label", "summary", "cases"}``, the finished run. Both are
written whole and atomically (:func:`drift.util.store.save_json`,
:func:`drift.util.store.save_object`).

- :func:`run_cases` — one run from start to results file: ``--out`` claimed, the log opened (or
  resumed), the cases it lacks computed, the results written; what ``eval`` and ``audit`` call.
- :class:`RecordLog` — the append-only log: of one configuration's finished cases (locked while a
  process writes it; it refuses a configuration other than its own, ``restart=True`` sets the old
  log aside instead; it repairs a last line cut by a kill or a full disk, and a header line
  damaged after the run's key), or of finished runs, one record each.
- :class:`ChunkLogs` — the folder of a sweep run's chunk logs.
- :func:`read_any` / :func:`join` — the finished cases of logs and results files of one
  configuration, checked to be one configuration; :func:`write_results` the results file.
- :func:`chunks` — a run cut into pieces of cases (what a sweep hands its workers).
- :func:`claim_out` / :func:`set_aside` — an ``--out`` checked before a run writes it, and what
  ``--restart`` does with a results file, log or chunk folder of another configuration: moved to
  ``PATH.aside-TIME``.

A run's configuration, key and label are :mod:`drift.cli.spec`'s.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> config = {"editor": "rome", "data": "builtin"}
    >>> with RecordLog(folder / "r.json.partial.jsonl", config) as log:
    ...     log.append({"case_id": "0", "metrics": {"ES": 100.0}})
    >>> with RecordLog(folder / "r.json.partial.jsonl", config) as log:   # resumed: case 0 is done
    ...     sorted(log.rows)
    ['0']
    >>> other = config | {"editor": "memit"}
    >>> with RecordLog(folder / "r.json.partial.jsonl", other):  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    ...     pass
    Traceback (most recent call last):
    ...
    drift.cli.runs.RunConflict: ...r.json.partial.jsonl holds 1 finished case(s) of another configuration
    (editor: 'rome' here, 'memit' asked); pass --restart to set it aside and start over ...
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from filelock import FileLock, Timeout

from drift.cli.spec import NAMED, NOT_IN_KEY, digest_of, file_name, run_key, run_label
from drift.util.store import CorruptCacheError, load_object, save_json, save_object

FORMAT = 1  # the header's "drift_run" value; a header without it has no format (and maybe no configuration)


class RunConflict(ValueError):
    """A log or results file belongs to another configuration, or another process writes it."""


def claim_out(
    out: Path | str,
    config: dict,
    *,
    restart: bool,
    option: str = "--restart",
    case_ids: Iterable | None = None,
) -> Path | None:
    """Check that writing a run's results to ``out`` loses nothing: a results file of the same
    configuration (same :func:`run_key`) whose cases the run writes again (all of them in
    ``case_ids``, when given) may be rewritten; anything else there (another configuration's
    results, cases this run does not cover — another shard, a larger ``--limit`` —, a file drift did
    not write) is refused with a ``RunConflict``, or, with ``restart``, moved aside to
    ``OUT.aside-TIME`` (returned)."""
    out = Path(out)
    if not out.is_file():
        return None
    try:
        found = json.loads(out.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        found = None
    if isinstance(found, dict) and isinstance(found.get("config"), dict):
        cases = found.get("cases")
        n = f" of {len(cases)} case(s)" if isinstance(cases, list) else ""
        if run_key(found["config"]) != run_key(config):
            what = (
                f"the finished results{n} of another configuration ({_difference(found['config'], config)})"
            )
        else:
            had = {str(c.get("case_id")) for c in cases or [] if isinstance(c, dict)}
            lost = sorted(had - {str(i) for i in case_ids}) if case_ids is not None else []
            if not lost:
                return None
            what = (
                f"the finished results{n} of this configuration, {len(lost)} of them cases this run does "
                f"not write (e.g. {', '.join(lost[:3])}: another --shard or a larger --limit); writing it "
                "would lose them: merge the parts with `python -m drift merge`"
            )
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


_HEADER = re.compile(r'\{"drift_run": \d+, "key": "([0-9a-f]+)"')  # the start of a header drift wrote


def _parse_lines(text: str) -> tuple[dict | None, list[dict], str | None]:
    """A log's header (``None`` when absent or unreadable), its finished case rows, and its first
    line when that line is damaged (not JSON; else ``None``). A line cut by an interruption (or any
    line that is not a case row) is skipped."""
    header, rows, damaged = None, [], None
    for i, line in enumerate(text.splitlines()):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            damaged = line if i == 0 else damaged
            continue
        if not isinstance(obj, dict):
            continue
        if i == 0 and ("drift_run" in obj or "config_key" in obj):
            header = obj
        elif "case_id" in obj and ("metrics" in obj or "file" in obj):
            rows.append(obj)
    return header, rows, damaged


def legible_key(line: str | None) -> str | None:
    """The run key still legible at the start of a damaged header line (``None`` when it is not).

    >>> legible_key('{"drift_run": 1, "key": "9d567adb23e83606", "config": {"data": "cf.js')
    '9d567adb23e83606'
    >>> legible_key('{"drift_run": 1, "ke') is None
    True
    """
    found = _HEADER.match(line or "")
    return found.group(1) if found else None


def _file_name(case_id: str) -> str:
    """The name of the file that keeps a case's result: 16 hex digits of its id's SHA-256."""
    return f"{hashlib.sha256(str(case_id).encode()).hexdigest()[:16]}.pt"


def read_records(path: Path | str) -> dict[str, dict]:
    """The records of a log of runs (a :class:`RecordLog` without a configuration), by their
    ``"key"``, the last of a key winning; a line cut by an interruption is skipped (that run simply
    runs again)."""
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
    """Append ``record`` to a JSON-lines log as one line, on a line of its own even after a line
    that a kill cut short (which stays, unread), flushed to disk before returning."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as f:
        f.seek(0, os.SEEK_END)
        cut = False
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            cut = f.read(1) != b"\n"
        f.write((("\n" if cut else "") + json.dumps(record) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


class RecordLog:
    """The one resumable log of drift: JSON lines, one finished record a line, appended (and
    flushed) as each finishes, a line cut by a kill skipped. Two kinds, told apart by ``config``:

    - **one run's cases** (``config`` given; ``eval``, ``audit``, a sweep's chunk, ``trace``):
      the first line is the header ``{"drift_run", "key", "config"}`` (the run's identity,
      :func:`run_key`), then one row per finished case, keyed by ``"case_id"`` (the first row of a
      case wins). Opened by ``with``, which holds ``PATH.lock`` (a second writer is refused) and
      repairs a last line cut by a kill; a log of another configuration is refused, or with
      ``restart`` set aside to ``PATH.aside-TIME`` (and so is a log of this one: start over). A
      header line damaged after the run's key is repaired from this run's configuration; one
      damaged before it is refused, naming ``option``. A result JSON cannot hold (a trace's
      tensors) is kept by :meth:`save` in ``FILES/HASH.pt`` (``FILES``: the log's path without
      ``.jsonl``), its row naming the file.
    - **runs** (no ``config``; ``sequential``'s ``sequential-runs.jsonl``): no header, one record
      per finished run ``{"key": run_key(config), "config", ...}`` (the last of a key wins), read
      when made; an unfinished run keeps its work in ``DIR/.partial-KEY/`` (:meth:`work`), removed
      when its record is appended. ``restart`` sets the log and every work folder in ``DIR``
      aside.

    Args:
        path: the log (created, with its header, when absent).
        config: the configuration of a log of one run's cases; ``None`` for a log of runs.
        restart: set an earlier log aside and start a new one instead of resuming or refusing.
        option: the option that means ``restart`` for the user, named in errors.

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with RecordLog(folder / "r.json.partial.jsonl", {"editor": "rome"}) as log:
    ...     log.append({"case_id": "0", "metrics": {"ES": 100.0}})
    >>> with RecordLog(folder / "r.json.partial.jsonl", {"editor": "rome"}) as log:
    ...     list(log.rows)
    ['0']
    >>> runs = RecordLog(folder / "sequential-runs.jsonl")
    >>> key = run_key({"editor": "memit"})
    >>> runs.work(key).mkdir()                   # a run in progress keeps its state there
    >>> runs.append({"key": key, "config": {"editor": "memit"}, "checkpoints": []})
    >>> list(RecordLog(runs.path).rows) == [key], runs.work(key).exists()
    (True, False)
    """

    def __init__(
        self,
        path: Path | str,
        config: dict | None = None,
        *,
        restart: bool = False,
        option: str = "--restart",
    ):
        self.path = Path(path)
        self.config = None if config is None else dict(config)
        self.key = None if config is None else run_key(config)
        self.by = "key" if config is None else "case_id"  # what names a record
        self.restart, self.option = restart, option
        self.rows: dict[str, dict] = {}
        self.aside: Path | None = None  # where an earlier log was moved
        self.files = self.path.with_suffix("")  # the files that rows name (save, load)
        self._adopted = False  # files of a trace folder written before its log existed
        self._lock = FileLock(str(self.path) + ".lock", timeout=0)
        if config is None:
            self.open()

    def __enter__(self) -> "RecordLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunConflict(
                f"{self.path} is being written by another process; wait for it to finish or "
                "choose another --out"
            ) from None
        try:
            if self.config is not None:
                self.open()
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def open(self) -> "RecordLog":
        """Read the log (``with`` does this under the lock; a log of runs is read when made)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.config is None:
            if self.restart:  # set aside, never deleted: --restart's one meaning
                for old in [self.path, *self.path.parent.glob(".partial-*")]:
                    if old.exists() and ".aside-" not in old.name:
                        print(f"--restart: the earlier {old} is kept as {set_aside(old)}", file=sys.stderr)
            self.rows = read_records(self.path)
        else:
            self._open_run()
        return self

    def _open_run(self) -> None:
        header, rows, damaged = self._read()
        if header is None and legible_key(damaged) == self.key:
            header = {"key": self.key}  # the rest of the header is this run's configuration
        same = header is not None and (
            header.get("key") == self.key  # or a log of an earlier drift, which keyed paths
            or (isinstance(header.get("config"), dict) and run_key(header["config"]) == self.key)
        )
        if same and not self.restart:
            self._resume(header, rows, repair=damaged is not None)
            self._adopted = self._old_files()
            return
        if rows and not self.restart:
            raise self._conflict(header, rows, damaged)
        if rows:
            self.aside = set_aside(self.path)
        if self.restart and self.files.is_dir():  # the files its rows name go with it
            set_aside(self.files)
        self._adopted = self._old_files()
        self.path.write_text(json.dumps({"drift_run": FORMAT, "key": self.key, "config": self.config}) + "\n")
        self.rows = {}

    def _read(self) -> tuple[dict | None, list[dict], str | None]:
        """The log's header, rows and damaged first line, a last line cut by a kill dropped first."""
        if not self.path.exists():
            return None, [], None
        raw = self.path.read_bytes()
        cut = raw.rfind(b"\n") + 1
        if cut < len(raw):  # a last line cut by a kill or a full disk: drop it
            with self.path.open("r+b") as f:
                f.truncate(cut)
            raw = raw[:cut]
        return _parse_lines(raw.decode("utf-8", errors="replace"))

    def _resume(self, header: dict, rows: list[dict], repair: bool) -> None:
        self.rows = {}
        for r in rows:  # in the log's order, the first row of a case winning
            self.rows.setdefault(str(r["case_id"]), r)
        started = header["config"].get("provenance", "unknown") if "config" in header else "unknown"
        if rows and "provenance" in self.config and started != self.config["provenance"]:
            # resumed by another commit, machine or library: say what began it
            self.config["provenance"] = self.config["provenance"] | {"started": started}
        if repair:  # a damaged header whose key is legible: written again, the rows kept
            lines = [{"drift_run": FORMAT, "key": self.key, "config": self.config}, *rows]
            text = "".join(json.dumps(x) + "\n" for x in lines)
            tmp = self.path.with_name(self.path.name + ".repair")
            tmp.write_text(text)
            os.replace(tmp, self.path)
            print(
                f"{self.path}: its damaged header line was written again from this run's configuration "
                f"(key {self.key}); its {len(self.rows)} finished case(s) are kept",
                file=sys.stderr,
            )

    def _conflict(self, header: dict | None, rows: list[dict], damaged: str | None) -> RunConflict:
        if damaged is not None and legible_key(damaged) is None:
            why = "no configuration (its header line is damaged before the run's key)"
        elif damaged is not None:
            why = (
                f"another configuration (key {legible_key(damaged)} in its damaged header, {self.key} asked)"
            )
        elif header is None or "config" not in header:
            why = "no configuration (its header has none)"
        else:
            why = f"another configuration ({_difference(header['config'], self.config)})"
        return RunConflict(
            f"{self.path} holds {len(rows)} finished case(s) of {why}; pass {self.option} to set it "
            "aside and start over (its rows stay in the file set aside), or choose another --out"
        )

    def _old_files(self) -> bool:
        """Whether ``FILES`` is a trace folder of an earlier drift (``config.json``, no log) of this
        run: its files are then read as this log's."""
        try:
            return json.loads((self.files / "config.json").read_text()).get("key") == self.key
        except (OSError, ValueError, AttributeError):
            return False

    def append(self, record: dict) -> None:
        """Add one finished record (a case row with ``case_id``, or a run's record with ``key``,
        whose work folder is then removed), flushed to disk before returning."""
        append_record(self.path, record)
        name = str(record[self.by])
        if self.config is None:
            self.rows[name] = record
            shutil.rmtree(self.work(name), ignore_errors=True)
        else:
            self.rows.setdefault(name, record)

    def remaining(self, cases: Sequence) -> list:
        """The cases (objects with ``case_id``) not finished yet, in their order."""
        return [c for c in cases if str(c.case_id) not in self.rows]

    def save(self, case_id: str, result: object) -> None:
        """Keep a case's result that JSON cannot hold (a trace's tensors): written whole to
        ``FILES/HASH.pt`` (``HASH``: 16 hex digits of the SHA-256 of the case id;
        :func:`drift.util.store.save_object`), then the row ``{"case_id", "file"}`` appended."""
        name = _file_name(case_id)
        save_object(self.files / name, result)
        self.append({"case_id": str(case_id), "file": name})

    def load(self, case_id: str) -> object | None:
        """The result :meth:`save` kept for the case, or ``None`` when it has none (or only a
        damaged one, which is reported: the case runs again)."""
        import warnings

        row = self.rows.get(str(case_id))
        if row is None and not self._adopted:
            return None
        path = self.files / (row or {}).get("file", _file_name(case_id))
        if not path.is_file():
            return None
        try:
            return load_object(path)
        except CorruptCacheError as e:
            warnings.warn(f"drift: {e}; running case {case_id} again")
            return None

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

    def work(self, key: str) -> Path:
        """The work folder of the unfinished run ``key`` (a log of runs)."""
        return self.path.parent / f".partial-{key}"

    def take_in(self, path: Path | str) -> int:
        """Add the records of another log of runs (a ``--part`` process's) that this one lacks
        and whose key is their configuration's; how many records that log holds."""
        theirs = read_records(path)
        for key, rec in theirs.items():
            if key not in self.rows and rec.get("key") == run_key(rec.get("config", {})):
                self.rows[key] = rec
                append_record(self.path, rec)
        return len(theirs)


def run_cases(
    out: Path | str,
    config: dict,
    cases: Sequence,
    work: Callable[[list, Callable[[dict], None]], object],
    *,
    restart: bool = False,
    pool: str = "prompts",
    write: Callable[[list[dict]], dict] | None = None,
) -> dict:
    """One run from start to results file, resumable: its log ``OUT.partial.jsonl`` opened (the
    cases an interrupted run finished are kept), ``out`` claimed (:func:`claim_out`: nothing of
    another configuration is lost), ``work(todo, append)`` called on the cases the log lacks (it
    calls ``append(row)`` as each finishes), then the results file written — by ``write(rows)``
    when given, else :func:`write_results` pooled by ``pool`` — and the log removed. Notes (what
    ``restart`` set aside, what is resumed) go to stderr; Ctrl-C says how many cases are saved.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "r.json"
    >>> class Case:
    ...     def __init__(self, i): self.case_id = str(i)
    >>> def work(todo, append):
    ...     for c in todo: append({"case_id": c.case_id, "metrics": {"ES": 100.0}})
    >>> run_cases(out, {"editor": "rome"}, [Case(0), Case(1)], work)["summary"]["ES"]
    100.0
    """
    out = Path(out)
    with RecordLog(out.with_name(out.name + ".partial.jsonl"), config, restart=restart) as log:
        if log.aside is not None:
            print(f"--restart: the earlier log is kept as {log.aside}", file=sys.stderr)
        aside = claim_out(out, config, restart=restart, case_ids=[c.case_id for c in cases])
        if aside is not None:
            print(f"--restart: the earlier {out} is kept as {aside}", file=sys.stderr)
        if log.rows:
            print(f"resuming: {len(log.rows)} cases already done in {log.path}", file=sys.stderr)
        try:
            work(log.remaining(cases), log.append)
        except KeyboardInterrupt:
            n = len([c for c in cases if str(c.case_id) in log.rows])
            raise KeyboardInterrupt(f"{n} of {len(cases)} cases saved in {log.path}") from None
        ids = {str(c.case_id) for c in cases}
        missing = [i for i in ids if i not in log.rows]
        if missing:
            raise RuntimeError(
                f"{log.path}: {len(missing)} case(s) unfinished ({', '.join(sorted(missing)[:5])}); "
                "run the same command again to finish them"
            )
        beyond = [i for i in log.rows if i not in ids]  # an earlier run's cases outside this one's
        if write is None:
            result = write_results(out, log.config, [log.rows[str(c.case_id)] for c in cases], pool)
        else:
            result = write([log.rows[str(c.case_id)] for c in cases])
        if beyond:
            print(
                f"{log.path} keeps {len(beyond)} finished case(s) beyond this run's cases (an earlier, "
                "larger run); the same command with those cases resumes them",
                file=sys.stderr,
            )
        else:
            log.path.unlink()
            Path(str(log.path) + ".lock").unlink(missing_ok=True)
        return result


class ChunkLogs:
    """The case logs of one run cut into chunks of cases, for ``sweep`` (and ``sadr``'s grid,
    which is a sweep): ``OUT/.parts/NAME/FIRST.jsonl``, one :class:`RecordLog` per chunk, named by
    the position of the chunk's first case in the run (``00010.jsonl``; the configuration in its
    header carries ``"chunk"``, which is outside the key), and ``earlier.jsonl``, the rows that a
    results file of the same configuration already held (a run whose ``--limit`` grew). When all
    are done they are joined into ``OUT/NAME.json`` (:func:`write_results`) and removed.

    >>> import tempfile, pathlib
    >>> logs = ChunkLogs(pathlib.Path(tempfile.mkdtemp()), "rome")
    >>> with RecordLog(logs.path(10), {"editor": "rome", "chunk": "00010"}) as log:
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
        with RecordLog(self.folder / "earlier.jsonl", config) as log:
            for row in rows:
                if row["case_id"] not in log.rows:
                    log.append(row)
            return log.path, list(log.rows.values())

    def remove(self) -> None:
        """Remove the run's logs (only ever a folder inside ``OUT/.parts/``)."""
        if self.folder.resolve().parent == self.root.resolve():
            shutil.rmtree(self.folder, ignore_errors=True)


def write_results(out: Path | str, config: dict, rows: Sequence[dict], pool: str, **extra) -> dict:
    """The results file of a run: ``{"config", "key", "label", "summary", "cases", ...extra}``,
    written atomically."""
    from drift.evaluation.metrics import summarise

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
        header, rows, damaged = _parse_lines(text)
        rows = [r for r in rows if "metrics" in r]
        if header is None and legible_key(damaged) is not None:
            raise ValueError(
                f"{command}: {path}'s header line is damaged, so its {len(rows)} case(s) cannot be merged "
                f"yet; run the eval command that wrote it again (run key {legible_key(damaged)}): it writes "
                "the header again and finishes the run, then merge its results file"
            )
        if header is None or "config" not in header:
            raise ValueError(
                f"{command}: {path} records no configuration (its header has none, or is damaged before "
                f"the run's key), so its {len(rows)} case(s) cannot be merged; the eval command that wrote "
                "it, run again with --restart, sets it aside (its rows stay there) and runs them again"
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
