"""The command line's options, defined once: typed groups that every subcommand of ``python -m drift``
and every script in ``analyses/`` builds its parser from.

Groups (each an ``add_*`` function that adds the options to a parser, and a frozen dataclass that
holds their parsed values):

- model: ``--model``, ``--device``, ``--dtype``
- data: ``--data``, ``--limit``, ``--shard``
- editor: ``--editor`` (with ``choices``), ``--dr``, ``--sadr``, ``--sadr-heads``, ``--steps``, ``--hp``
- scoring: ``--scoring``, ``--pool``, and eval's metric forms (``--no-fluency``, ``--ppl``, ...)
- output: ``--out`` (a results file) or ``--out-dir`` (a folder, for a command that writes many
  files), ``--restart``
- verbosity: ``-v``/``--verbose``, ``-q``/``--quiet`` (before or after the subcommand)
- run: ``--seed``, ``--batch-size``, ``--edit-batch``

An option means the same wherever it appears; only a default may differ between commands (``trace``
edits the first 10 cases by default, ``eval`` all of them), and each command's ``--help`` says which.
Every value is checked while parsing, by the option's ``type`` or ``choices``, and this module
imports nothing heavy, so a mistake is refused with one line before torch is imported.

A sweep file is a mapping of option names to values; :func:`from_table` turns it into the same
namespace a command line gives: each value written as the command line would spell it and parsed
by the option's own type, so the one check refuses it with the same reason.

Example:
    >>> p = parser("demo")
    >>> add_model(p); add_data(p); add_editor(p); add_output(p, kind="file", required=True)
    >>> ns = p.parse_args(["--editor", "rome", "--hp", "lr=0.5", "--out", "r.json"])
    >>> o = Options.of(ns)
    >>> o.editor.editor, o.editor.hp, o.data.data, o.output.out
    ('rome', {'lr': 0.5}, 'builtin', 'r.json')
    >>> from_table(p, {"editor": "memit", "limit": 3, "out": "x.json"}).limit
    3
    >>> from_table(p, {"editor": "romee", "out": "x.json"})
    Traceback (most recent call last):
    ...
    ValueError: unknown editor 'romee'; known editors: none, rome, rome-awd, memit, pmet, adaple
"""

from __future__ import annotations

import argparse
import ast
import math
import numbers
import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

EDITORS = ("none", "rome", "rome-awd", "memit", "pmet", "adaple")  # drift.editors.COMPUTE and none
EDITED = EDITORS[1:]  # commands that need an edit
DTYPES = ("bf16", "fp16", "fp32")
SCORINGS = ("mean", "product")  # drift.evaluation.metrics.SCORINGS
POOLS = ("prompts", "cases")


# --- value types: each raises ArgumentTypeError with a message naming what was wrong -----------


def positive_int(text: str | int) -> int:
    """A whole number ≥ 1.

    >>> positive_int("3")
    3
    """
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if isinstance(text, float) and text != value:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text: str | float) -> float:
    """A number in [0, 1) (a drop rate).

    >>> fraction("0.8")
    0.8
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value:g}")
    return value


def non_negative(text: str | float) -> float:
    """A number ≥ 0 (SADR's γ).

    >>> non_negative("1e-2")
    0.01
    """
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


SEED_MAX = 2**31 - 1  # every seed drift derives from it (per case, per delta) then fits torch's 64 bits


def seed_value(text: str | int) -> int:
    """A seed: a whole number in [0, :data:`SEED_MAX`]. Each case's drop-and-rescale mask is seeded
    with ``(seed * 7919 + salt) * 1_000_003 + i`` (:func:`drift.editors.fusion.case_seed`), which
    torch takes only below 2**64; numpy takes any seed below 2**32.

    >>> seed_value("7")
    7
    >>> seed_value("1e23")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a whole number in [0, 2147483647], got '1e23'
    """
    try:
        value = int(str(text))
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a whole number in [0, {SEED_MAX}], got {text!r}")
    return value


def case_source(text: str) -> str:
    """``builtin`` or a file that exists (its contents are checked when the cases are read)."""
    text = str(text)
    if text == "builtin" or Path(text).is_file():
        return text
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a CounterFact-format JSON file")
    raise argparse.ArgumentTypeError(
        f"no such file: {text} (give 'builtin' or a CounterFact-format JSON file)"
    )


def existing_file(text: str) -> str:
    """A file that exists."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return str(text)


def existing_folder(text: str) -> str:
    """A folder that exists."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    return str(text)


def shard_spec(text: str) -> str:
    """``"I/N"`` with 1 ≤ I ≤ N: the I-th of N parts.

    >>> shard_spec("2/4")
    '2/4'
    """
    index, sep, count = str(text).partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = 0
    if not sep or not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N (e.g. 2/4), got {text!r}")
    return f"{i}/{n}"


def check_shard(text: str | None, option: str = "--shard") -> str | None:
    """A ``ValueError`` naming ``option`` when ``text`` is not ``I/N`` (:func:`shard_spec`).

    >>> check_shard("x")
    Traceback (most recent call last):
    ...
    ValueError: --shard expects I/N with 1 <= I <= N (e.g. 2/4), got 'x'
    """
    if text is None:
        return None
    try:
        return shard_spec(text)
    except argparse.ArgumentTypeError:
        raise ValueError(f"{option} expects I/N with 1 <= I <= N (e.g. 2/4), got {text!r}") from None


def hp_item(text: str) -> tuple[str, Any]:
    """``"NAME=VALUE"`` as ``(NAME, value)``; the value a Python literal (numbers, booleans, tuples),
    else the string. A number that is not finite (``nan``, ``inf``, ``1e999``), alone or inside a
    tuple, is refused: no step size or weight is meant to be one. Whether the name exists and the
    value's kind are checked by the editor.

    >>> hp_item("layers=(3, 4)"), hp_item("anchor=mean")
    (('layers', (3, 4)), ('anchor', 'mean'))
    >>> hp_item("lr=1e999")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: --hp lr=1e999: expected a finite number, got inf
    """
    name, sep, value = str(text).partition("=")
    if not sep or not name.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"--hp expects NAME=VALUE, got {text!r}")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        parsed = value.strip()
    bad = _not_finite(parsed)
    if bad is not None:
        raise argparse.ArgumentTypeError(
            f"--hp {name.strip()}={value.strip()}: expected a finite number, got {bad}"
        )
    return name.strip(), parsed


def _not_finite(value: Any) -> str | None:
    """The first number in ``value`` (a number, a numeric text such as ``"nan"``, or a tuple or
    list of them) that is NaN or infinite, as text; ``None`` when there is none."""
    if isinstance(value, (tuple, list)):
        return next((bad for v in value if (bad := _not_finite(v)) is not None), None)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return None


def parse_hp(items: list[str]) -> dict:
    """``["n_prefixes=11", "early_stop=0"]`` -> ``{"n_prefixes": 11, "early_stop": 0}``
    (:func:`hp_item` each); a ``ValueError`` for an item that is not ``NAME=VALUE``.

    >>> parse_hp(["n_prefixes=11", "lr = 0.1"])
    {'n_prefixes': 11, 'lr': 0.1}
    """
    try:
        return dict(hp_item(i) for i in items)
    except argparse.ArgumentTypeError as e:
        raise ValueError(str(e)) from None


def layer_span(text: str) -> tuple[int, int]:
    """``"LO,HI"`` as two layers, first <= last.

    >>> layer_span("21,26")
    (21, 26)
    """
    try:
        lo, hi = (int(x) for x in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected first,last layer (e.g. 21,26), got {text!r}") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= first <= last")
    return lo, hi


def counts(text: str) -> list[int]:
    """``"1,10,25"`` as whole numbers ≥ 1 (checkpoints).

    >>> counts("1,10,25")
    [1, 10, 25]
    """
    try:
        values = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated edit counts, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated edit counts >= 1, got {text!r}")
    return values


def editor_list(text: str, *, allowed: tuple[str, ...] = EDITED) -> list[str]:
    """``"rome,memit"`` as names, each one of ``allowed``.

    >>> editor_list("rome, memit")
    ['rome', 'memit']
    """
    names = [e.strip() for e in str(text).split(",") if e.strip()]
    bad = [e for e in names if e not in allowed]
    if not names or bad:
        named = ", ".join(map(repr, bad)) or "none given"
        raise argparse.ArgumentTypeError(f"invalid editor(s) {named} (choose from {', '.join(allowed)})")
    return names


def editor_name(choices: tuple[str, ...] = EDITORS):
    """The type of ``--editor``: one of ``choices`` (also given to argparse, for ``--help``)."""

    def editor(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"unknown editor {text!r}; known editors: {', '.join(choices)}")
        return text

    return editor


def floats(text: str) -> list[float]:
    """``"1e-3,1e-2"`` as numbers."""
    try:
        values = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {text!r}")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


# --- the parser -------------------------------------------------------------------------------


class OptionError(SystemExit, ValueError):
    """A mistake in the options. Both what argparse raises (a ``SystemExit`` with status 2) and
    what drift raises for a bad input (a ``ValueError``); :class:`Parser` has already printed it."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def named(option: str, message: str) -> str:
    """A value's error message naming its option: as it is when it names the option already
    (``unknown editor 'x'``), else ``--steps must be ...`` or ``--dtype: invalid choice ...``.

    >>> named("--steps", "must be at least 1, got 0"), named("--editor", "unknown editor 'x'")
    ('--steps must be at least 1, got 0', "unknown editor 'x'")
    """
    word = option.lstrip("-").replace("_", " ").replace("-", " ")
    if word in message or option in message:
        return message
    return f"{option} {message}" if message.startswith("must") else f"{option}: {message}"


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage error is one line on stderr, ``error: MESSAGE (see PROG
    --help)``, raised as an :class:`OptionError` (exit status 2)."""

    def error(self, message: str):  # type: ignore[override]
        found = re.match(r"argument ([^:/ ]+)(?:/\S+)?: (.*)", message, re.S)
        text = named(*found.groups()) if found else message
        sys.stderr.write(f"error: {text} (see {self.prog} --help)\n")
        raise OptionError(text)


def parser(prog: str, description: str | None = None, **kw) -> Parser:
    """A parser for a command or script (its options then added by the ``add_*`` functions)."""
    return Parser(prog=prog, description=description, **kw)


def add_verbosity(p: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v``/``--verbose`` and ``-q``/``--quiet``, on the top parser and on every subcommand's
    (there their default is left unset, so either place works)."""
    unset = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbosity",
        help="log what drift does, with every edit's loss per step (-vv: debug detail too)",
        **({"default": 0} if top else unset),
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bars and no notes: results, warnings and errors only",
        **({"default": False} if top else unset),
    )


def add_model(
    p: argparse.ArgumentParser, *, model: bool = True, dtype: bool = True, device: bool = True
) -> None:
    """``--model``, ``--device``, ``--dtype``: which model, where and in what precision."""
    g = p.add_argument_group("model")
    if model:
        g.add_argument(
            "--model",
            default=None,
            metavar="NAME",
            help="model name, hub id or local folder (default: smollm2-135m)",
        )
    if device:
        g.add_argument(
            "--device",
            default=None,
            help="torch device for the model, e.g. cuda (default: cuda when available, else cpu)",
        )
    if dtype:
        g.add_argument(
            "--dtype",
            choices=DTYPES,
            default=None,
            help="precision of the model's weights and forward pass (default: fp32); editors still "
            "solve in float32/float64 and round each update to it once",
        )


def add_data(
    p: argparse.ArgumentParser,
    *,
    default: str | None = "builtin",
    limit: int | None = None,
    shard: bool = False,
    with_limit: bool = True,
    default_help: str | None = None,
) -> None:
    """``--data``, ``--limit`` (``with_limit``; ``limit`` its default) and (``shard``) ``--shard``:
    which cases. ``default_help`` describes a ``None`` default that the command resolves itself."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        type=case_source,
        default=default,
        metavar="builtin|FILE",
        help=f"'builtin' or a CounterFact-format JSON file (default: {default_help or default})",
    )
    if with_limit:
        g.add_argument(
            "--limit",
            type=positive_int,
            default=limit,
            metavar="N",
            help=f"only the first N cases (default: {limit if limit is not None else 'all'})",
        )
    if shard:
        g.add_argument(  # checked by check_shard: a ValueError, as the SLURM-given shard's
            "--shard",
            default=None,
            metavar="I/N",
            help="only the I-th of N equal contiguous parts of the cases (I from 1); "
            "join the parts with `python -m drift merge`",
        )


def add_editor(
    p: argparse.ArgumentParser,
    *,
    default: str = "none",
    choices: tuple[str, ...] = EDITORS,
    tuning: bool = True,
    sadr: bool = True,
    fusion: bool = True,
) -> None:
    """``--editor`` and how it edits: ``--steps``, ``--hp`` (``tuning``), ``--sadr``,
    ``--sadr-heads`` (``sadr``), ``--dr`` (``fusion``)."""
    g = p.add_argument_group("editor")
    g.add_argument(
        "--editor",
        type=editor_name(choices),
        choices=choices,
        default=default,
        help="the editor: rome, rome-awd, memit, pmet, adaple, or none (the unedited model) where the "
        f"command allows it (default: {default})",
    )
    if fusion:
        g.add_argument(
            "--dr",
            type=fraction,
            default=None,
            metavar="P",
            help=DR_HELP + " (default: 0.8 for adaple, off for the others; 0 turns it off)",
        )
    if sadr:
        add_sadr(g)
        g.add_argument(
            "--sadr-heads",
            choices=["selective", "all"],
            default="selective",
            help="SADR restrains heads that over-attend (selective, default) or every head (all)",
        )
    if tuning:
        add_steps(g)
        g.add_argument(
            "--hp",
            type=hp_item,
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="override one hyper-parameter of the editor's preset, e.g. --hp n_prefixes=11 "
            "--hp early_stop=0 (repeatable; values are Python literals)",
        )


def add_steps(g) -> None:
    """``--steps N``: the editor's optimisation steps."""
    g.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="optimisation steps of the editor (default: its preset)",
    )


def add_sadr(g) -> None:
    """``--sadr [GAMMA]``: SADR added to the editor's objective (``-1.0`` when given alone)."""
    g.add_argument(
        "--sadr",
        type=non_negative,
        nargs="?",
        const=-1.0,
        default=None,
        metavar="GAMMA",
        help="add SADR to the editor's objective; alone: the editor's γ and steps for the model "
        "(drift.editors.presets.SADR_SETTINGS: the paper's App. C.2; on the default SmolLM2-135M "
        "ROME γ=4e-2 with 20 steps and MEMIT γ=4e-2 with 80, each chosen on validation cases, "
        "results/validation/ and results/validation-memit/; GPT-J's for a model without a row: ROME "
        "γ=1e-2 with 80 steps, MEMIT 5e-3 with 20, PMET 8e-2 with 40); with GAMMA: that γ (the "
        "paper's scale, multiplying the KL) at the editor's steps",
    )


DR_HELP = "drop-and-rescale fusion of each update with drop rate P"


def add_scoring(p: argparse.ArgumentParser, *, pool: bool = True, forms: bool = False) -> None:
    """``--scoring``, ``--pool`` and (``forms``) how eval computes FL, PPL, RES and RefS."""
    g = p.add_argument_group("scoring")
    g.add_argument(
        "--scoring",
        choices=SCORINGS,
        default="mean",
        help="a multi-token target's probability: exp of its mean log-probability per token "
        "(default, as the papers' code) or its whole probability (product)",
    )
    if pool:
        g.add_argument(
            "--pool",
            choices=POOLS,
            default="prompts",
            help="summaries count every prompt once (default, as the papers' code) or every case once",
        )
    if not forms:
        return
    g.add_argument("--no-fluency", action="store_true", help="skip generation and the FL metric")
    g.add_argument(
        "--fluency",
        choices=["reference", "short"],
        default="reference",
        help="FL as the reference (default: every generation prompt, 100 tokens, Treebank words) or "
        "short (2 prompts, 40 new tokens, whitespace words)",
    )
    g.add_argument(
        "--ppl",
        type=existing_file,
        default=None,
        metavar="TEXTS.json",
        help="JSON list of texts ({'Text': ...} or strings) for PPL",
    )
    g.add_argument(
        "--ppl-form",
        choices=["reference", "per-text"],
        default="reference",
        help="PPL of the texts joined and cut to 100 tokens (default, the reference's) or the mean "
        "over texts of each one's perplexity",
    )
    g.add_argument(
        "--res",
        choices=["reference", "accuracy"],
        default="reference",
        help="RES: each reasoning answer against o_true (default, the reference's) or its "
        "teacher-forced token accuracy",
    )
    g.add_argument(
        "--references",
        type=existing_folder,
        default=None,
        metavar="DIR",
        help="folder with ROME's attribute_snippets.json (and idf.npy, tfidf_vocab.json): RefS, "
        "the TF-IDF similarity of generations with texts about o_edit",
    )


def add_output(
    p: argparse.ArgumentParser,
    *,
    kind: str,
    default: str | None = None,
    required: bool = False,
    restart: bool = True,
) -> None:
    """``--out`` (``kind``: ``"file"``, the results file of one run, or ``"folder"``, where a command
    writing many files puts them: ``--out-dir``) and ``--restart`` (its help the command's)."""
    if kind not in ("file", "folder"):
        raise ValueError(f"add_output: kind must be 'file' or 'folder', got {kind!r}")
    g = p.add_argument_group("output")
    what = "the results file" if kind == "file" else "the folder for the results and figures"
    g.add_argument(
        "--out" if kind == "file" else "--out-dir",
        dest="out",
        type=results_file if kind == "file" else results_folder,
        default=default,
        required=required,
        metavar="FILE.json" if kind == "file" else "DIR",
        help=what + (f" (default: {default})" if default else ""),
    )
    if restart:
        g.add_argument("--restart", action="store_true", help=RESTART_HELP)


def results_file(text: str) -> str:
    """An ``--out`` that names a file: not a folder."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is a folder; give the path of a results file, e.g. {Path(text) / 'results.json'}"
        )
    return str(text)


def results_folder(text: str) -> str:
    """An ``--out`` that names a folder: not a file."""
    if Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder for the results")
    return str(text)


# How far --batch-size and --edit-batch move a number: float rounding only (rows padded or packed
# differently, several cases' vectors optimised in one batch), so neither is part of a run's
# identity and a resume may mix them. Measured on SmolLM2-135M on a CPU at most 8e-6 relative
# (docs/reliability.md); tests/test_reliability.py asserts this bound on the tiny model.
BATCH_TOLERANCE = 1e-4
BATCH_NOTE = (
    f"results agree within float rounding (at most {BATCH_TOLERANCE:g} relative; a success "
    "comparison within rounding of a tie could flip), so it is not part of the run's identity"
)


def add_run(
    p: argparse.ArgumentParser,
    *,
    seed: bool = True,
    batch_size: int | None = None,
    edit_batch: bool = False,
) -> None:
    """``--seed``, ``--batch-size`` (when ``batch_size`` is given: its default) and ``--edit-batch``."""
    g = p.add_argument_group("run")
    if seed:
        g.add_argument(
            "--seed",
            type=seed_value,
            default=0,
            help=f"seed of sampling and of any random choice, a whole number in [0, {SEED_MAX}] (default: 0)",
        )
    if batch_size is not None:
        g.add_argument(
            "--batch-size",
            type=positive_int,
            default=batch_size,
            metavar="N",
            help=f"sequences per forward pass, memory against speed; {BATCH_NOTE} (default: {batch_size})",
        )
    if edit_batch:
        g.add_argument(
            "--edit-batch",
            type=positive_int,
            default=None,
            metavar="N",
            help="cases whose target vectors are optimised together, each then applied, scored "
            f"and removed in turn; {BATCH_NOTE} (default: on a GPU from its free memory, on a CPU 1: "
            "one at a time)",
        )


def add_engine(p: argparse.ArgumentParser, *, flag: bool = False) -> None:
    """Where a sweep's chunks run: ``--engine`` (``flag``: ``--ray``), ``--address``, ``--workers``,
    ``--per-gpu``, ``--chunk``."""
    p = p.add_argument_group("engine")
    if flag:
        p.add_argument("--ray", action="store_true", help="run the chunks on Ray workers")
    else:
        p.add_argument(
            "--engine",
            choices=["ray", "local"],
            default="ray",
            help="ray (default): chunks as Ray tasks; local: one after another in this process",
        )
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: start one here)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="local Ray instance: worker processes (default: cores)",
    )
    p.add_argument(
        "--per-gpu",
        type=positive_int,
        default=4,
        help="with --device cuda: workers sharing each GPU (default 4)",
    )
    p.add_argument(
        "--chunk",
        type=positive_int,
        default=None if not flag else 10,
        help="cases per task (default: " + ("10)" if flag else "the spec's, else 10)"),
    )


def add_eval(p: argparse.ArgumentParser) -> None:
    """``eval``'s options (also what a sweep file's keys may set)."""
    add_data(p, shard=True)
    add_model(p)
    add_editor(p)
    add_scoring(p, forms=True)
    add_run(p, batch_size=16, edit_batch=True)
    p.add_argument(
        "--sequential",
        action="store_true",
        help="stack the edits without rolling back and evaluate all edits so far at checkpoints",
    )
    p.add_argument(
        "--checkpoints",
        type=counts,
        default="1,10,25,50,100",
        metavar="N,N,...",
        help=CHECKPOINTS_HELP + " (default: 1,10,25,50,100 and the last)",
    )
    p.add_argument(
        "--batch-edits",
        type=positive_int,
        default=1,
        metavar="B",
        help="with --sequential: edits computed on the same model state and applied together (default: 1)",
    )
    add_output(p, kind="file", required=True)


CHECKPOINTS_HELP = "with --sequential: edit counts after which all edits so far are evaluated"
EDITORS_HELP = "comma-separated editors"
RESTART_HELP = (
    "start over: what an earlier run left at the output (results, logs of another configuration or of an "
    "interrupted run) is set aside as NAME.aside-TIME, never deleted"
)


def add_audit(p: argparse.ArgumentParser) -> None:
    """``audit``'s options: eval's cases, model and editor; no generation, one case at a time."""
    add_data(p, shard=True)
    add_model(p)
    add_editor(p, default="rome", choices=EDITED)
    add_scoring(p, pool=False)
    add_run(p, edit_batch=True)
    p.set_defaults(no_fluency=True, batch_size=1)  # an audit generates nothing
    p.add_argument(
        "--validate",
        action="store_true",
        help="also evaluate the cases' NS/RS/DNS prompts and report each signal's AUROC",
    )
    p.add_argument(
        "--fit",
        type=existing_file,
        default=None,
        metavar="AUDIT.json",
        help="with --validate: fit the combined score on this earlier audit "
        "(default: two-fold cross-fitting)",
    )
    p.add_argument(  # checked by the command: --recall must be a fraction in (0, 1]
        "--recall", type=float, default=0.8, help="report the precision at this recall (0.8)"
    )
    add_output(p, kind="file", required=True)


# --- typed groups -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelOptions:
    model: str | None = None
    device: str | None = None
    dtype: str | None = None


@dataclass(frozen=True)
class DataOptions:
    data: str = "builtin"
    limit: int | None = None
    shard: str | None = None


@dataclass(frozen=True)
class EditorOptions:
    editor: str = "none"
    dr: float | None = None
    sadr: float | None = None  # -1.0: the paper's setting (``--sadr`` alone)
    sadr_heads: str = "selective"
    steps: int | None = None
    hp: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ScoringOptions:
    scoring: str = "mean"
    pool: str = "prompts"
    fluency: str | None = "reference"  # None: no generation, no FL (--no-fluency)
    ppl: str | None = None
    ppl_form: str = "reference"
    res: str = "reference"
    references: str | None = None


@dataclass(frozen=True)
class OutputOptions:
    out: str | None = None
    restart: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class RunOptions:
    seed: int = 0
    batch_size: int | None = None
    edit_batch: int | None = None


GROUPS = {
    "model": ModelOptions,
    "data": DataOptions,
    "editor": EditorOptions,
    "scoring": ScoringOptions,
    "output": OutputOptions,
    "run": RunOptions,
}
NOT_OPTIONS = ("command", "verbosity", "no_fluency")


@dataclass(frozen=True)
class Options:
    """A command's parsed options, by group; ``extra`` holds the command's own options."""

    command: str = "eval"
    model: ModelOptions = ModelOptions()
    data: DataOptions = DataOptions()
    editor: EditorOptions = EditorOptions()
    scoring: ScoringOptions = ScoringOptions()
    output: OutputOptions = OutputOptions()
    run: RunOptions = RunOptions()
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, ns: argparse.Namespace | dict, command: str | None = None) -> "Options":
        """The typed view of a parsed namespace (or a dict of option values): each value goes to its
        group; ``--no-fluency`` is ``scoring.fluency = None``."""
        values = dict(vars(ns) if isinstance(ns, argparse.Namespace) else ns)
        if isinstance(values.get("hp"), list):
            values["hp"] = dict(values["hp"])
        if values.get("no_fluency"):
            values["fluency"] = None
        taken: set[str] = set(NOT_OPTIONS)
        groups = {}
        for name, kind in GROUPS.items():
            names = {f.name for f in fields(kind)}
            groups[name] = kind(**{k: v for k, v in values.items() if k in names})
            taken |= names
        extra = {k: v for k, v in values.items() if k not in taken}
        return cls(command=command or values.get("command") or "eval", extra=extra, **groups)

    @property
    def out(self) -> Path:
        """``--out`` as a path."""
        if self.output.out is None:
            raise ValueError(f"{self.command}: --out is required")
        return Path(self.output.out)

    @property
    def progress(self) -> bool:
        """Whether to show progress bars (not with ``--quiet`` or ``-q``)."""
        return not self.output.quiet


def from_table(p: argparse.ArgumentParser, table: dict, where: str = "") -> argparse.Namespace:
    """The namespace ``p`` would parse from a command line setting the options of ``table`` (keys
    are option names without dashes, ``-`` or ``_``; ``hp`` a table of hyper-parameters), each value
    checked by its option's type and choices; a ``ValueError`` naming the option, prefixed with
    ``where``. Options not in ``table`` take their defaults.

    >>> p = parser("x"); add_editor(p); add_scoring(p, forms=True)
    >>> ns = from_table(p, {"editor": "rome", "no_fluency": True, "hp": {"lr": 0.5}})
    >>> ns.editor, ns.no_fluency, ns.hp
    ('rome', True, [('lr', 0.5)])
    """
    by_name: dict[str, argparse.Action] = {}
    values: dict[str, Any] = {}
    for action in p._actions:
        if action.dest in (argparse.SUPPRESS, "help") or action.default is argparse.SUPPRESS:
            continue
        default = action.default
        if isinstance(default, str) and action.type is not None:  # as argparse types a str default
            default = action.type(default)
        values[action.dest] = list(default) if isinstance(default, list) else default
        for flag in action.option_strings:
            if flag.startswith("--"):
                by_name[flag[2:].replace("-", "_")] = action
    for key, value in table.items():
        if value is None:  # unset, as an option left off the command line
            continue
        action = by_name.get(str(key).replace("-", "_"))
        if action is None:
            raise ValueError(f"{where}unknown option {key!r} (known: {', '.join(sorted(by_name))})")
        values[action.dest] = _value(action, key, value, where)
    missing = [a.option_strings[0] for a in p._actions if a.required and a.dest not in table]
    if missing:
        raise ValueError(f"{where}{', '.join(missing)} is required")
    return argparse.Namespace(**values)


def _value(action: argparse.Action, key: str, value: Any, where: str) -> Any:
    """One table value as the option's parsed value: written as it would be on the command line
    (:func:`as_text`) and parsed by the option's own type and choices, so a value the command
    line refuses is refused here with the same message (naming ``key`` and the value)."""

    def typed(v: Any) -> Any:
        text = as_text(v, key, where)
        if action.type is not None:
            try:
                text = action.type(text)
            except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
                raise ValueError(where + named(key, str(e))) from None
        if action.choices is not None and text not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise ValueError(f"{where}{key}: invalid choice {text!r} (choose from {choices})")
        return text

    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ValueError(f"{where}{key}: expected true or false, got {value!r}")
        return value if isinstance(action, argparse._StoreTrueAction) else not value
    if isinstance(action, argparse._AppendAction):
        if key == "hp":
            if not isinstance(value, dict):
                raise ValueError(f"{where}hp must be a table (hp = {{ lr = 0.5 }}), got {value!r}")
            return [
                typed(f"{k}={v if isinstance(v, (str, tuple, list)) else as_text(v, f'hp {k}', where)}")
                for k, v in value.items()
            ]
        return [typed(v) for v in (value if isinstance(value, list) else [value])]
    if value is True and action.nargs == "?":
        return action.const
    return typed(value)


def as_text(value: Any, key: str = "", where: str = "") -> str:
    """A sweep file's value as the command line would spell it: a string as it is, a number by
    its ``repr`` (which reads back exactly), ``true``/``false`` as ``True``/``False`` (which a
    numeric option refuses, as it refuses the word); a table or list is not one option's value.

    >>> as_text(0.01), as_text(3), as_text(True)
    ('0.01', '3', 'True')
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, numbers.Integral):  # also numpy's integers
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    raise ValueError(f"{where}{key}: expected one value, got {value!r}")


def writable_file(out: str | Path) -> Path:
    """An ``--out`` results file checked before any work: its folder exists (or is made) and can be
    written; a ``ValueError`` naming it otherwise."""
    out = Path(out)
    if out.is_dir():
        raise ValueError(
            f"--out {out} is a folder; give the path of a results file, e.g. {out / 'results.json'}"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot create its folder ({e.strerror})") from None
    if not os.access(out.parent, os.W_OK):
        raise ValueError(f"--out {out}: its folder {out.parent} is not writable")
    return out


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


def user_error(e: BaseException) -> bool:
    """Whether ``e`` is a user's mistake (bad file, option, case, model name, damaged cache, an
    edit that diverged under the settings given) rather than a bug. drift's own error types are
    looked up only where their module was imported: a mistake found while parsing needs none of
    them (nor torch)."""
    kinds: list[type] = [ValueError, FileNotFoundError, FloatingPointError]
    for module, name in (
        ("drift.model.loading", "ModelLoadError"),
        ("drift.util.store", "CorruptCacheError"),
        ("drift.editors.target", "EditDiverged"),  # a step size the case cannot take
    ):
        if module in sys.modules:
            kinds.append(getattr(sys.modules[module], name))
    return isinstance(e, tuple(kinds))


def heavy_loaded() -> bool:
    """Whether torch has been imported in this process (what a refused option must not need)."""
    return "torch" in sys.modules
