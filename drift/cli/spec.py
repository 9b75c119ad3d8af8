"""The run spec: a run's settings, resolved, checked and frozen once from its options
(:class:`Spec`), and what derives from it: its configuration (the record of what its results
depend on, written into its log and results file), its key and its label.

A configuration holds what a run's results depend on (data by name and digest, model, editor and
its resolved settings, scoring, seed, metric forms, sampling corpus); :func:`run_key` names its log
and results file, :func:`run_label` is the readable name tables show. Every command builds its
configuration from a :class:`Spec` (:meth:`Spec.of`, or :func:`run_config` for the dict alone), the
configuration flows one way (spec → configuration → key and label), and nothing finds a run by
parsing its label.

Example:
    >>> from drift.cli.options import Options, EditorOptions
    >>> spec = Spec.of(Options(editor=EditorOptions(editor="rome", sadr=0.01, steps=80)))
    >>> spec.label, spec.key == run_key(spec.config)
    ('rome+SADR(γ=0.01) 80 steps', True)
    >>> spec.evaluation                                   # what evaluate() measures
    EvalSpec()
    >>> run_label({"editor": "rome", "sadr": 0.01, "steps": 80})
    'rome+SADR(γ=0.01) 80 steps'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drift.cli.options import EditorOptions

if TYPE_CHECKING:
    from drift.evaluation.spec import EvalSpec

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
    from drift.util.store import config_digest  # (imports torch: not before an option is checked)

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


@dataclass(frozen=True, repr=False)
class Spec:
    """One run's settings as it runs, built once from its options by :meth:`of`. Its
    configuration (:attr:`config`), key and label derive from it; ``evaluation`` is what
    :func:`drift.evaluation.evaluate.evaluate` takes.

    Entries that were added to drift later (``dtype``, ``steps``, ``dr``, ``sadr``, ``hp``) enter
    the configuration only when set, so the keys of runs made before them stay as they were.
    """

    kind: str  # "eval" (eval, audit, sweep runs), "sequential" (eval --sequential), or an analysis
    model: str  # as keyed: a packaged or hub name, or a folder's path @ its files' digest
    data: str  # the case file by name (its digest beside it), or "builtin"
    data_sha256: str
    editor: EditorOptions  # as run: --sadr alone resolved to the paper's γ, steps and settings
    seed: int = 0
    scoring: str = "mean"
    pool: str = "prompts"
    dtype: str | None = None  # "bf16" / "fp16"; None: float32 (whose keys predate the entry)
    device: str | None = None  # as asked (--device); what ran is in the provenance
    limit: int | None = None  # not in the key (a run whose limit grew keeps its cases)
    shard: str | None = None  # "I/N"; not in the key
    evaluation: EvalSpec | None = None  # eval: the metric forms, texts, batch sizes
    ppl: str | None = None  # eval: the perplexity texts' file by name, and its digest
    ppl_sha256: str | None = None
    references: str | None = None  # eval: the RefS texts' folder by name
    sampling: int | None = None  # the key statistics' corpus version (drift.editors.stats)
    extra: tuple[tuple[str, Any], ...] = ()  # a command's own entries, in order
    provenance: dict = field(default_factory=dict, compare=False)  # what ran it; not in the key

    @classmethod
    def of(cls, options, editor: EditorOptions | None = None, *, kind: str = "eval", **extra) -> Spec:
        """The spec of a run of ``options`` (a :class:`drift.cli.options.Options`): the editor
        resolved (:func:`resolve_editor`; ``editor``: already resolved), the data's and texts'
        digests taken, and for ``kind="eval"`` the :class:`~drift.evaluation.spec.EvalSpec` with
        the ``--ppl`` texts and ``--references`` loaded (a bad file is named here, before any model
        loads). ``extra``: the command's own entries (``sequential``: ``checkpoints``, ``batch_edits``)."""
        from drift.editors.stats import CORPUS_VERSION
        from drift.model.loading import run_model_name

        o, s = options, options.scoring
        e = editor if editor is not None else resolved_editor(o)
        evaluation = _evaluation(o) if kind == "eval" else None
        data = str(o.data.data)
        return cls(
            kind=kind,
            model=run_model_name(o.model.model),
            data=file_name(data),
            data_sha256=digest_of(data),  # a case file edited since a run began: another run
            editor=e,
            seed=o.run.seed,
            scoring=s.scoring,
            pool=s.pool,
            dtype=o.model.dtype if o.model.dtype not in (None, "fp32") else None,
            device=o.model.device,
            limit=o.data.limit,
            shard=o.data.shard,
            evaluation=evaluation,
            ppl=file_name(s.ppl) if evaluation is not None else None,
            ppl_sha256=digest_of(s.ppl) if evaluation is not None and s.ppl else None,
            references=file_name(s.references) if evaluation is not None else None,
            sampling=CORPUS_VERSION,
            extra=tuple(extra.items()),
            provenance=provenance(o, data),
        )

    def as_kind(self, kind: str, **extra) -> Spec:
        """This run's spec for another kind of run of the same options (``eval --sequential``
        plans an eval, then runs it as a sequential one), with ``extra`` its own entries."""
        evaluation = self.evaluation if kind == "eval" else None
        return dataclasses.replace(self, kind=kind, evaluation=evaluation, extra=tuple(extra.items()))

    @property
    def config(self) -> dict:
        """The run's configuration (a new dict each time): what its results depend on, with its
        ``provenance`` (outside the key) last."""
        entries = self._sequential() if self.kind == "sequential" else self._entries()
        return entries | {"provenance": dict(self.provenance)}

    @property
    def key(self) -> str:
        """:func:`run_key` of the configuration: names the run's log and results file."""
        return run_key(self.config)

    @property
    def label(self) -> str:
        """:func:`run_label` of the configuration: the run's name in tables."""
        return run_label(self.config)

    def editor_overrides(self) -> dict:
        """The editor's keyword arguments beyond ``drop_rate`` and ``seed`` (:func:`editor_overrides`)."""
        return editor_overrides(self.editor)

    def _hp(self) -> dict | None:
        e = self.editor
        return {k: repr(v) for k, v in sorted(e.hp.items())} if e.hp else None

    def _entries(self) -> dict:
        """An eval's (``kind="eval"``) or an analysis's configuration, entries in their historic order."""
        e, ev = self.editor, self.evaluation
        config: dict = {"data": self.data, "editor": e.editor, "model": self.model, "seed": self.seed}
        if ev is not None:
            config |= {"fluency": bool(ev.fluency), "ppl": self.ppl}
        config["scoring"] = self.scoring
        if ev is not None:
            config["pool"] = self.pool
        config |= {"data_sha256": self.data_sha256, "limit": self.limit}
        if ev is not None:
            config["forms"] = {"fluency": ev.fluency or None, "ppl": ev.ppl_form, "res": ev.res}
            if self.references is not None:
                config["references"] = self.references
            if self.ppl:
                config["ppl_sha256"] = self.ppl_sha256
        if e.sadr is not None:
            config |= {"sadr": e.sadr, "sadr_heads": e.sadr_heads}
        config |= {
            k: v for k, v in (("steps", e.steps), ("dr", e.dr), ("dtype", self.dtype)) if v is not None
        }
        if self._hp():
            config["hp"] = self._hp()
        if self.shard is not None:
            config["shard"] = self.shard
        if e.editor != "none" or (ev is not None and ev.fluency):  # depends on sampled text
            config["sampling"] = self.sampling
        return config | dict(self.extra)

    def _sequential(self) -> dict:
        """``eval --sequential``'s configuration, entries in their historic order."""
        e, extra = self.editor, dict(self.extra)
        return {
            "data": self.data,
            "data_sha256": self.data_sha256,
            "limit": self.limit,
            "editor": e.editor,
            "model": self.model,
            "seed": self.seed,
            "dr": e.dr,
            "sequential": True,
            "batch_edits": extra["batch_edits"],
            "checkpoints": extra["checkpoints"],
            "sadr": e.sadr,
            "sadr_heads": e.sadr_heads if e.sadr is not None else None,
            "steps": e.steps,
            "hp": self._hp(),
            "scoring": self.scoring,
            "pool": self.pool,
            **({"dtype": self.dtype} if self.dtype else {}),
        }

    def __repr__(self) -> str:
        """The kind, label and key, then the settings that are not their defaults."""
        shown = [f"{self.kind} {self.label!r} key={self.key}", f"model={self.model!r}"]
        shown.append(f"data={self.data!r}@{self.data_sha256}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("kind", "model", "data", "data_sha256", "editor", "provenance", "sampling"):
                continue
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            shown.append(f"{f.name}={value!r}")
        return f"Spec({', '.join(shown)})"


def _evaluation(options) -> EvalSpec:
    """What ``eval`` measures (:class:`drift.evaluation.spec.EvalSpec`) from its options, the
    ``--ppl`` texts and ``--references`` loaded."""
    from drift.evaluation.spec import EvalSpec

    s, run = options.scoring, options.run
    references = None
    if s.references is not None:
        from drift.evaluation.metrics import load_reference_texts

        references = load_reference_texts(s.references)
    return EvalSpec(
        fluency=s.fluency or False,
        ppl_texts=load_texts(s.ppl) if s.ppl else None,
        ppl_form=s.ppl_form,
        res=s.res,
        references=references,
        scoring=s.scoring,
        seed=run.seed,
        batch_cases=run.batch_size or 16,
        edit_batch=run.edit_batch,
    )


def run_config(options, editor: EditorOptions | None = None, *, kind: str = "eval", **extra) -> dict:
    """The configuration of a run of ``options`` (:attr:`Spec.config` of :meth:`Spec.of`): what
    its results depend on, whose :func:`run_key` names its log and results file. ``kind``:

    - ``"eval"``: one ``eval`` (or ``audit``, ``sweep`` run) configuration;
    - ``"sequential"``: ``eval --sequential`` (``extra``: ``checkpoints``, ``batch_edits``);
    - any other: the data, model, editor and scoring of an analysis, with ``extra`` its own entries.

    Input files are recorded by name (their digest beside them), never by a path of the machine;
    ``provenance`` (:func:`provenance`: drift's version and commit, device, libraries) is outside
    the key.

    >>> from drift.cli.options import Options, EditorOptions
    >>> c = run_config(Options(editor=EditorOptions(editor="rome", steps=80)))
    >>> c["editor"], c["steps"], c["data"], c["sampling"] is not None
    ('rome', 80, 'builtin', True)
    """
    return Spec.of(options, editor, kind=kind, **extra).config


def resolved_editor(options) -> EditorOptions:
    """The editor's options as they will run: ``--sadr`` alone becomes the paper's γ and steps for
    the editor and model (with any other hyper-parameter of the paper's run, under ``--hp``'s); a
    ``ValueError`` when ``--steps`` and ``--hp steps=`` both set the steps."""
    e = options.editor
    hp = dict(e.hp)
    if e.steps is not None and "steps" in hp:  # two values for one setting: the run would lie about one
        raise ValueError(
            f"--steps {e.steps} and --hp steps={hp['steps']} both set the editor's steps; give one"
        )
    if e.sadr is not None and e.sadr < 0:  # --sadr alone: the paper's γ and steps for this editor and model
        import drift
        from drift.editors.sadr import paper_setting

        setting = paper_setting(e.editor, options.model.model or drift.DEFAULT_MODEL)
        gamma, steps = setting.pop("gamma"), setting.pop("steps")
        e = dataclasses.replace(e, sadr=gamma, steps=e.steps if e.steps is not None else steps)
        hp = setting | hp
    return dataclasses.replace(e, hp=hp)


def editor_overrides(editor: EditorOptions) -> dict:
    """The keyword overrides of a resolved editor (:func:`resolved_editor`): SADR's term, the
    steps, and its hyper-parameters (``--hp``)."""
    overrides: dict = {}
    if editor.sadr is not None:
        from drift.editors.sadr import SADR

        overrides["extra_terms"] = (SADR(editor.sadr, editor.sadr_heads),)
    if editor.steps is not None:
        overrides["steps"] = editor.steps
    return overrides | editor.hp


def resolve_editor(options) -> tuple[EditorOptions, dict]:
    """The editor's options as they will run (:func:`resolved_editor`) and its keyword overrides
    (:func:`editor_overrides`)."""
    editor = resolved_editor(options)
    return editor, editor_overrides(editor)


def load_texts(path: str) -> list[str]:
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
