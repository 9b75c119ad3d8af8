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
# --limit grew keeps the cases it has
NOT_IN_KEY = ("shard", "chunk", "limit")


def run_key(config: dict) -> str:
    """The canonical key of a configuration: 16 hex digits of the SHA-256 of its JSON with sorted
    keys, without the entries that only say which part of the cases a process does.

    >>> run_key({"editor": "rome", "shard": "1/2"}) == run_key({"editor": "rome"})
    True
    """
    return config_digest({k: v for k, v in config.items() if k not in NOT_IN_KEY})


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
    only when set, so the keys of runs made before them stay as they were.

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
    return config | extra


def file_or_name(value: str | None) -> str | None:
    """A data or text file as its absolute path (so ``d.json`` and ``/here/d.json`` are one
    configuration); a name such as ``builtin`` as given."""
    if value is None or not Path(value).is_file():
        return value
    return str(Path(value).resolve())


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
