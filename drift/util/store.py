"""On-disk caches that survive interruption and concurrent writers.

Every cache drift keeps (the converted default model, key statistics, context prefixes) goes
through this module:

- ``cache_root()``: ``$DRIFT_CACHE`` if set, else ``$XDG_CACHE_HOME/drift`` or ``~/.cache/drift``.
- ``building_dir(final)``: a context manager that yields a private temporary folder next to
  ``final``; on a clean exit it writes a manifest (file sizes and SHA-256 digests) and renames the
  folder into place in one step. If another process got there first, the other folder wins
  and ours is discarded, so two writers end with one valid folder. A folder a killed build left
  (its lock no longer held) is removed by the next build of that name and reported by ``doctor``.
- ``verify_dir(folder)``: True only for a folder whose manifest's files are all there at their
  sizes; ``damaged_files(folder)`` / ``verify_dir_stamped(folder)`` also check their contents on
  every load, each file hashed in full with XXH3 (:func:`fast_digest`, at memory speed).
- ``doctor()``: every cache re-hashed in full (``python -m drift doctor``).
- ``save_json_checked`` / ``load_json_checked``: a JSON cache (sampled texts) with its digest.
- ``save_tensors`` / ``load_tensors``: one safetensors file written atomically, with a digest
  of its contents in its metadata; a truncated or altered file raises ``CorruptCacheError``.
- ``replacing(path)``: the one atomic write (a temporary file renamed over ``path``), under
  ``save_text``, ``save_json`` (every JSON file a later run reads, strict: NaN written
  ``null``), ``save_object`` (pickles) and ``save_tensors``. Run state (logs, records,
  resumable progress) is :mod:`drift.cli.runs`'.

Example:
    >>> import tempfile, pathlib, torch
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> save_tensors(root / "c.safetensors", {"C": torch.eye(2)}, {"layer": "3"})
    >>> tensors, meta = load_tensors(root / "c.safetensors")
    >>> meta["layer"], tensors["C"].shape
    ('3', torch.Size([2, 2]))
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import torch

MANIFEST = "drift-manifest.json"


class CorruptCacheError(RuntimeError):
    """A cache file exists but does not match its recorded size or digest."""


def cache_root() -> Path:
    """The folder under which drift keeps its caches (created on demand)."""
    env = os.environ.get("DRIFT_CACHE")
    if env:
        root = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = Path(base) / "drift"
    root.mkdir(parents=True, exist_ok=True)
    return root


def config_digest(config: object) -> str:
    """16 hex digits of the SHA-256 of ``config`` as JSON with sorted keys: the identity of a
    configuration (a run's key, a resumable state's owner).

    >>> config_digest({"b": 1, "a": [2]}) == config_digest({"a": [2], "b": 1})
    True
    """
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _manifest_of(folder: Path) -> dict[str, dict[str, int | str]]:
    return {
        p.name: {"size": p.stat().st_size, "sha256": file_digest(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }


def verify_dir(folder: Path, *, digests: bool = False) -> bool:
    """Whether ``folder`` is a complete cache folder.

    Sizes are always checked (cheap); ``digests=True`` also re-hashes every file.
    """
    man_path = folder / MANIFEST
    if not man_path.is_file():
        return False
    try:
        manifest = json.loads(man_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(manifest, dict) or not manifest:
        return False
    for name, rec in manifest.items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != rec.get("size"):
            return False
        if digests and file_digest(p) != rec.get("sha256"):
            return False
    return True


STAMP = ".drift-verified.json"
SAMPLE_CHUNKS, SAMPLE_BYTES = 256, 1 << 16  # a sampled digest reads 16 MiB of a file at most
FULL_CHECK_EVERY = 7 * 24 * 3600  # seconds between full re-hashes of a folder checked by samples
# A folder whose full fast hash took longer than this (measured at its last full check) is
# checked by samples on load instead. 538 MB of SmolLM2 hash in 0.06 s here (BENCHMARKS.md).
FAST_HASH_SECONDS = 5.0


def fast_digest(path: Path) -> str:
    """XXH3-128 of a whole file (hex): the hash run on every load of a cached model, at memory
    speed (8.8 GB/s here from the page cache against 12.7 GB/s to read alone; SHA-256, the
    manifest's hash, runs at 1.1 GB/s). Not cryptographic: it finds damage, not tampering."""
    import xxhash

    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def sample_digest(path: Path) -> str:
    """SHA-256 of a file's size and of ``SAMPLE_CHUNKS`` chunks of ``SAMPLE_BYTES`` at fixed,
    evenly spread offsets (the first and last bytes included): the whole file when it is small.
    Used on load only for folders too large to hash in full in ``FAST_HASH_SECONDS``; damage that
    misses every chunk waits for the weekly full check there."""
    size = Path(path).stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= SAMPLE_CHUNKS * SAMPLE_BYTES:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        else:
            span = size - SAMPLE_BYTES
            for i in range(SAMPLE_CHUNKS):
                f.seek(i * span // (SAMPLE_CHUNKS - 1))
                h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def damaged_files(folder: Path, *, full: bool = False) -> list[str] | None:
    """The names of ``folder``'s files that do not hold what its manifest records (``[]``: sound),
    or ``None`` when it is no complete cache folder (no manifest, a file missing or of another
    size: an interrupted build). Checked on a schedule that costs little per load:

    - every load hashes every file in full with :func:`fast_digest` and compares it with the
      digest recorded at the folder's last full check (in ``STAMP``, beside the files' sizes and
      modification times), so a file overwritten in place, even in 4 KiB at the same size and
      with its modification time put back, is caught at the next load;
    - a folder whose full fast hash took longer than ``FAST_HASH_SECONDS`` at that check is
      checked by sizes, modification times and :func:`sample_digest` instead, and in full weekly;
    - no stamp, a difference, or ``full=True`` (``python -m drift doctor``) re-hashes every file
      with SHA-256 against the manifest and, when all match, writes a new stamp."""
    if not verify_dir(folder):
        return None
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        now = {n: [(folder / n).stat().st_size, (folder / n).stat().st_mtime_ns] for n in manifest}
    except (OSError, json.JSONDecodeError):
        return None
    if not full:
        try:
            stamp = json.loads((folder / STAMP).read_text())
            files = stamp["files"]
            if float(stamp["fast_seconds"]) <= FAST_HASH_SECONDS:
                if set(files) == set(now) and all(fast_digest(folder / n) == files[n][3] for n in now):
                    return []
            else:
                fresh = 0 <= time.time() - float(stamp["checked"]) < FULL_CHECK_EVERY
                if fresh and {n: v[:2] for n, v in files.items()} == now:
                    if all(sample_digest(folder / n) == files[n][2] for n in now):
                        return []
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            pass
    bad = [n for n, rec in manifest.items() if file_digest(folder / n) != rec.get("sha256")]
    if bad:
        return bad
    try:
        start = time.perf_counter()
        fast = {n: fast_digest(folder / n) for n in now}
        seconds = time.perf_counter() - start
        stamp = {
            "checked": time.time(),
            "fast_seconds": round(seconds, 3),
            "files": {n: [*v, sample_digest(folder / n), fast[n]] for n, v in now.items()},
        }
        save_json(folder / STAMP, stamp)
    except OSError:  # a read-only cache: verified now, verified again next time
        pass
    return []


def verify_dir_stamped(folder: Path, *, full: bool = False) -> bool:
    """Whether ``folder`` is complete and its files hold what its manifest records, checked as
    :func:`damaged_files` says (every file hashed in full on each load, fast)."""
    return damaged_files(folder, full=full) == []


BUILDING = ".building-"  # a folder being built: ``.NAME.building-XXXX``, its lock file beside it
STALE_UNLOCKED_AFTER = 60.0  # seconds: a building folder with no lock file is left over after this


@contextlib.contextmanager
def building_dir(final: Path) -> Iterator[Path]:
    """Build a cache folder privately, then move it into place atomically.

    If the block raises (or is interrupted), the temporary folder is removed and ``final`` is
    untouched. If ``final`` already holds a valid folder when we finish, ours is discarded.
    The temporary folder's lock (``.NAME.building-XXXX.lock``, held while it is built) tells a
    build in progress from one a killed process left; those are removed first
    (:func:`left_over_builds`), so a conversion killed mid-save leaves nothing behind for long.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for old in left_over_builds(final.parent, final.name):
        remove_build(old)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{BUILDING}", dir=final.parent))
    held = _hold(_lock_of(tmp))
    try:
        yield tmp
        (tmp / MANIFEST).write_text(json.dumps(_manifest_of(tmp), indent=1))
        if final.exists() and not verify_dir(final):
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not verify_dir(final):  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _lock_of(tmp).unlink(missing_ok=True)
        if held is not None:
            os.close(held)


def _lock_of(tmp: Path) -> Path:
    return tmp.parent / f"{tmp.name}.lock"


def _hold(lock: Path) -> int | None:
    """An open descriptor holding an exclusive lock on ``lock`` (released when it is closed or
    the process dies, however it dies); ``None`` where file locks are not available."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: left-over builds are told by age alone
        return None
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _being_built(folder: Path) -> bool:
    """Whether a process is building ``folder`` now: it holds the folder's lock, or (no lock file,
    as an older drift left) the folder changed within :data:`STALE_UNLOCKED_AFTER` seconds."""
    lock = _lock_of(folder)
    try:
        import fcntl

        fd = os.open(lock, os.O_RDONLY)
    except (ImportError, OSError):
        try:
            return time.time() - folder.stat().st_mtime < STALE_UNLOCKED_AFTER
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def left_over_builds(parent: Path, name: str = "*") -> list[Path]:
    """Folders under ``parent`` that a build of cache folder ``name`` (any, by default) left when
    its process was killed (``.NAME.building-XXXX``, with no process building it any more)."""
    if not parent.is_dir():
        return []
    pattern = f".{name if name == '*' else glob.escape(name)}{BUILDING}*"
    found = [p for p in sorted(parent.glob(pattern)) if p.is_dir()]
    return [p for p in found if not _being_built(p)]


def remove_build(folder: Path) -> None:
    """Delete a left-over building folder and its lock file."""
    shutil.rmtree(folder, ignore_errors=True)
    _lock_of(folder).unlink(missing_ok=True)


def _size_text(folder: Path) -> str:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return f"{total / 1e6:.1f} MB"


def _tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write ``tensors`` to a safetensors file atomically (temp file + rename), with a digest."""
    from safetensors.torch import save_file

    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with replacing(path) as tmp:
        save_file(clean, tmp, metadata={**meta, "drift_digest": _tensor_digest(clean)})


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a file written by ``save_tensors``; raise ``CorruptCacheError`` if it is damaged."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for truncated headers/data
        raise CorruptCacheError(f"cache file {path} is unreadable ({e})") from e
    digest = meta.pop("drift_digest", None)
    if digest is None or digest != _tensor_digest(tensors):
        raise CorruptCacheError(f"cache file {path} does not match its recorded digest")
    return tensors, meta


def doctor(root: Path | None = None, *, fix: bool = False) -> list[tuple[Path, str | None]]:
    """Check every cache under ``root`` (default :func:`cache_root`) in full: each model folder
    (re-hashed against its manifest), each tensor file (against its recorded digest), each JSON
    text cache (against the digest stored with it, :func:`save_json_checked`: one changed
    character is found). Returns ``(path, problem)`` for everything checked (``problem`` ``None``
    when sound); ``fix=True`` deletes what is damaged, so it is rebuilt when next needed. A folder
    a killed build left (hidden ``.NAME.building-*``, :func:`left_over_builds`) is reported with
    its size (``--fix`` removes it); one being built now is left alone."""
    root = cache_root() if root is None else Path(root)
    found: list[tuple[Path, str | None]] = []

    def walk(folder: Path) -> None:
        if (folder / MANIFEST).is_file():
            bad = damaged_files(folder, full=True)
            problem = (
                None
                if bad == []
                else "incomplete (a file missing or cut short)"
                if bad is None
                else f"{', '.join(bad)} do{'es' if len(bad) == 1 else ''} not match the recorded digest"
            )
            found.append((folder, problem))
            return
        for p in left_over_builds(folder):
            found.append((p, f"{LEFT_OVER} ({_size_text(p)}); nothing reads it; {REMOVE_HOW % p}"))
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                walk(p)
            elif p.suffix == ".safetensors":
                try:
                    load_tensors(p)
                    found.append((p, None))
                except CorruptCacheError as e:
                    found.append((p, str(e)))
            elif p.suffix == ".json":
                try:
                    load_json_checked(p)
                    found.append((p, None))
                except CorruptCacheError as e:
                    found.append((p, str(e).removeprefix(f"cache file {p} ")))

    if root.is_dir():
        walk(root)
    if fix:
        for path, problem in found:
            if problem is not None and BUILDING in path.name:
                remove_build(path)
            elif problem is not None:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    return found


LEFT_OVER = "a half-written folder left by a conversion that was killed"
REMOVE_HOW = "remove it with `python -m drift doctor --fix` or `rm -r %s` (the next build of it does too)"


def _umask_mode() -> int:
    """The mode a plain new file gets under the process's umask (``mkstemp`` makes 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[str]:
    """A temporary file beside ``path`` (its name, created empty) that replaces ``path`` in one
    rename when the block ends cleanly and is removed when it raises: a reader sees the old file
    or the new one, never half of one. How drift writes every whole file that a later run reads
    (logs grow a line at a time instead, and cache folders are renamed whole by ``building_dir``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (:func:`replacing`), with the permissions the umask gives; an
    ``OSError`` names ``path``, not the temporary file."""
    path = Path(path)
    try:
        with replacing(path) as tmp:
            os.chmod(tmp, _umask_mode())
            Path(tmp).write_text(text, encoding="utf-8")
    except OSError as e:  # a full disk, a read-only folder: name the file meant
        raise OSError(e.errno, e.strerror, str(path)) from e


def strict(obj: object) -> object:
    """``obj`` with every float that JSON cannot hold (NaN, ±inf) made ``None``, recursively
    through dicts, lists and tuples: what :func:`save_json` writes, so that every JSON file drift
    writes is strict JSON (a bare ``NaN`` fails strict parsers). Read back, such a metric is
    ``None``, which drift's summaries read as missing, as they read NaN.

    >>> strict({"PPL": float("nan"), "ci": [1.0, float("inf")], "n": 3})
    {'PPL': None, 'ci': [1.0, None], 'n': 3}
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def save_json(path: Path, obj: object) -> None:
    """Write ``obj`` as strict JSON (indented by one space) atomically: a results file, a cache of
    texts, a command's summary. NaN and ±inf are written as ``null`` (:func:`strict`). ``obj`` is
    serialised before anything is written, so one that JSON cannot hold raises and leaves the
    old file as it was.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "r.json"
    >>> save_json(path, {"ES": 100.0})
    >>> save_json(path, {"ES": object()})
    Traceback (most recent call last):
    ...
    TypeError: Object of type object is not JSON serializable
    >>> json.loads(path.read_text())
    {'ES': 100.0}
    >>> save_json(path, {"PPL": float("nan")})
    >>> path.read_text().split()
    ['{', '"PPL":', 'null', '}']
    """
    save_text(path, json.dumps(strict(obj), indent=1, allow_nan=False))


def _json_digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, allow_nan=False).encode()).hexdigest()


def save_json_checked(path: Path, value: object) -> None:
    """A JSON cache with its digest: ``{"drift_sha256": ..., "value": value}``, written atomically;
    :func:`load_json_checked` (and ``python -m drift doctor``) finds a changed character."""
    value = strict(value)
    save_json(path, {"drift_sha256": _json_digest(value), "value": value})


def load_json_checked(path: Path) -> object:
    """The value of a file written by :func:`save_json_checked`; ``CorruptCacheError`` naming the
    file when it is unreadable, lacks its digest (written by an older drift) or does not match it.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "texts.json"
    >>> save_json_checked(path, ["The first time I"])
    >>> load_json_checked(path)
    ['The first time I']
    >>> _ = path.write_text(path.read_text().replace("first", "First"))  # one character
    >>> load_json_checked(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    drift.util.store.CorruptCacheError: cache file ... does not match its recorded digest
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptCacheError(f"cache file {path} is not readable JSON ({e})") from e
    if not isinstance(data, dict) or "drift_sha256" not in data or "value" not in data:
        raise CorruptCacheError(
            f"cache file {path} has no recorded digest (written by an older drift): it cannot be verified"
        )
    try:
        ok = _json_digest(data["value"]) == data["drift_sha256"]
    except ValueError:  # a NaN put in by hand: strict JSON cannot hold it
        ok = False
    if not ok:
        raise CorruptCacheError(f"cache file {path} does not match its recorded digest")
    return data["value"]


def save_object(path: Path, obj: object) -> None:
    """Pickle ``obj`` (tensors and dataclasses of drift's results) atomically with ``torch.save``."""
    with replacing(path) as tmp:
        torch.save(obj, tmp)


def load_object(path: Path) -> object:
    """Read a file written by ``save_object`` (drift's own files only: it unpickles);
    ``CorruptCacheError`` if it is damaged."""
    try:
        return torch.load(path, weights_only=False)
    except Exception as e:  # truncated or foreign files fail in several ways
        raise CorruptCacheError(f"cache file {path} is unreadable ({e})") from e
