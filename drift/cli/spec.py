"""The run spec: a run's one configuration, built once from its options, and its key and label.

A configuration holds what a run's results depend on (data by path and digest, model, editor and
its resolved settings, scoring, seed, sampling corpus); :func:`run_key` names its log and results
file, :func:`run_label` is the readable name tables show. Every command builds its configuration
with :func:`run_config`, and nothing finds a run by parsing its label.

Example:
    >>> run_label({"editor": "rome", "sadr": 0.01, "steps": 80})
    'rome+SADR(γ=0.01) 80 steps'
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from drift.util.store import config_digest

# keys of a configuration that do not change any case's result: a shard's finished cases are the
# whole run's cases, so logs of different shards (or chunks) of one run join, and a run whose
# --limit grew keeps the cases it has; "provenance" (:func:`provenance`) says what ran it
NOT_IN_KEY = ("shard", "chunk", "limit", "provenance")
NAMED = ("data", "ppl", "references")  # input files: recorded (and keyed) by name, beside their digest


def run_key(config: dict) -> str:
    """The canonical key of a configuration: 16 hex digits of the SHA-256 of its JSON with sorted
    keys, without the entries that only say which part of the cases a process does.

    >>> run_key({"editor": "rome", "shard": "1/2"}) == run_key({"editor": "rome"})
    True
    >>> run_key({"data": "/there/d.json"}) == run_key({"data": "d.json"})   # files by name
    True
    """
    kept = {k: (file_name(v) if k in NAMED else v) for k, v in config.items() if k not in NOT_IN_KEY}
    return config_digest(kept)


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
    :class:`drift.cli.options.Options`, ``editor`` its editor options resolved (``--sadr`` alone made
    the paper's γ and steps; default: as given). ``kind``:

    - ``"eval"``: one ``eval`` (or ``audit``, ``sweep`` run) configuration;
    - ``"sequential"``: ``eval --sequential`` (``extra``: ``checkpoints``, ``batch_edits``);
    - any other: the data, model, editor and scoring of an analysis, with ``extra`` its own entries.

    Entries that were added to drift later (``dtype``, ``steps``, ``dr``, ``sadr``, ``hp``) appear
    only when set, so the keys of runs made before them stay as they were. Input files are
    recorded by name (their digest beside them), never by a path of the machine; ``provenance``
    (:func:`provenance`: drift's version and commit, device, libraries) is outside the key.

    >>> from drift.cli.options import Options, EditorOptions
    >>> c = run_config(Options(editor=EditorOptions(editor="rome", steps=80)))
    >>> c["editor"], c["steps"], c["data"], c["sampling"] is not None
    ('rome', 80, 'builtin', True)
    """
    from drift.model.loading import run_model_name

    o = options
    e = editor if editor is not None else o.editor
    data = str(o.data.data)
    model = run_model_name(o.model.model)  # a folder: its path @ its files' digest
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
        config["forms"] = {
            "fluency": s.fluency,
            "ppl": s.ppl_form,
            "res": s.res,
        }  # drift/evaluation/metrics.py
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
    :class:`drift.cli.options.Options` (its model and run groups); ``extra``: more entries.

    >>> p = provenance(data="builtin")
    >>> sorted(p) == sorted(PROVENANCE_FIELDS), p["data"]["name"], len(p["data"]["sha256"])
    (True, 'builtin', 16)
    """
    import platform

    from drift.model.loading import default_device

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

    package = Path(__file__).resolve().parents[1]  # drift/
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
