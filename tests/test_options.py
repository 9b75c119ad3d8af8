"""drift/cli/options.py: one definition of every option, the same checks on the command line and in a
sweep file, and a bad option refused in one line before torch is imported."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drift.__main__ import build_parser
from drift.cli import options as O

ROOT = Path(__file__).resolve().parents[1]

BAD = [
    (["eval", "--editor", "romee", "--out", "x.json"], "unknown editor 'romee'"),
    (["eval", "--dtype", "bf32", "--out", "x.json"], "--dtype: invalid choice: 'bf32'"),
    (["eval", "--edit-batch", "0", "--out", "x.json"], "--edit-batch must be at least 1"),
    (["eval", "--data", "no/such.json", "--out", "x.json"], "--data: no such file"),
    (["eval", "--shard", "3/2", "--out", "x.json"], "--shard expects I/N"),
    (["eval", "--hp", "steps", "--out", "x.json"], "--hp expects NAME=VALUE"),
    (["audit", "--editor", "none", "--out", "x.json"], "unknown editor 'none'"),
    (["trace", "--editor", "romee"], "unknown editor 'romee'"),
    (["trace", "--kinds", "mlp,head"], "--kinds: expected some of mlp,attn,layer"),
    (["sadr", "--editors", "rome,foo"], "--editors: invalid editor(s) 'foo'"),
    (["sequential", "--part", "0/2"], "--part: expected I/N"),
    (["mechanism", "--attn-layers", "5"], "--attn-layers: expected first,last layer"),
    (["steps", "--config", "later"], "--config: invalid choice: 'later'"),
    # 47.16, 47.18: values that are not finite, or seeds torch cannot take, refused while parsing
    (
        ["eval", "--editor", "rome", "--hp", "lr=nan", "--out", "x.json"],
        "--hp lr=nan: expected a finite number",
    ),
    (["eval", "--editor", "rome", "--hp", "lr=1e999", "--out", "x.json"], "--hp lr=1e999: expected a finite"),
    (["eval", "--editor", "rome", "--sadr", "inf", "--out", "x.json"], "--sadr must be a finite number >= 0"),
    (["eval", "--editor", "rome", "--sadr", "nan", "--out", "x.json"], "--sadr must be a finite number >= 0"),
    (["eval", "--seed", "1e23", "--out", "x.json"], "--seed: expected a whole number in [0, 2147483647]"),
    (["eval", "--seed", "-1", "--out", "x.json"], "got '-1'"),
    (["eval", "--seed", str(2**31), "--out", "x.json"], f"got '{2**31}'"),
]


@pytest.mark.parametrize("argv, message", BAD, ids=[" ".join(a[:3]) for a, _ in BAD])
def test_a_bad_option_is_refused_in_one_line_before_torch_loads(argv, message):
    code = (
        "import sys\nfrom drift.__main__ import cli\n"
        f"try:\n    rc = cli({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
        "print('torch' in sys.modules, rc)"
    )
    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    seconds = time.time() - t0
    assert done.stdout.split() == ["False", "2"], done.stdout + done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert seconds < 2 * 3  # < 2 s on an idle machine; this one is shared with long jobs


def test_an_analysis_script_refuses_a_bad_option_the_same_way():
    done = subprocess.run(
        [sys.executable, "analyses/trace.py", "--editor", "romee"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: unknown editor 'romee'")
    assert len(done.stderr.strip().splitlines()) == 1


def test_every_subcommand_has_its_help():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    names = set(sub.choices)
    assert {"eval", "trace", "sadr", "mechanism", "sequential", "audit", "sweep", "compare", "merge"} <= names
    for name in names:
        assert sub.choices[name].format_help()


def test_the_editor_choices_are_the_editors():
    from drift.editors import COMPUTE

    assert set(O.EDITORS) == {"none", *COMPUTE}


def test_no_parser_outside_options_defines_model_data_or_out():
    """benchmarks/peer_rome.py is left out: it runs in the reference code's environment (.venv-peer)
    and imports nothing of drift by design; its --model is that side's Hugging Face folder."""
    defined = re.compile(r"""add_argument\(\s*["']--(model|data|out)["']""")
    files = [*ROOT.glob("drift/**/*.py"), *ROOT.glob("analyses/*.py"), *ROOT.glob("benchmarks/*.py")]
    found = [
        str(f.relative_to(ROOT))
        for f in files
        if f.name not in ("options.py", "peer_rome.py") and defined.search(f.read_text())
    ]
    assert not found


def test_a_table_gives_what_the_command_line_gives():
    p = O.parser("eval")
    O.add_eval(p)
    argv = [
        "--editor",
        "rome",
        "--sadr",
        "0.01",
        "--no-fluency",
        "--hp",
        "lr=0.5",
        "--limit",
        "3",
        "--out",
        "r.json",
    ]
    table = {
        "editor": "rome",
        "sadr": 0.01,
        "no_fluency": True,
        "hp": {"lr": 0.5},
        "limit": 3,
        "out": "r.json",
    }
    assert vars(O.from_table(p, table)) == vars(p.parse_args(argv))
    assert O.from_table(p, {"sadr": True, "out": "r.json"}).sadr == -1.0  # `--sadr` alone


def test_typed_groups_take_each_value_once():
    args = build_parser().parse_args(["-q", "eval", "--editor", "memit", "--no-fluency", "--out", "r.json"])
    o = O.Options.of(args)
    assert (o.editor.editor, o.scoring.fluency, o.output.quiet, o.run.batch_size) == ("memit", None, True, 16)
    assert o.extra == {"sequential": False, "checkpoints": [1, 10, 25, 50, 100], "batch_edits": 1}


def _imports(path: Path) -> set[str]:
    """The drift modules a file imports anywhere (top level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("drift"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("drift")}
    return found


def test_the_command_line_has_no_import_cycle():
    """options imports no drift module; nothing imports __main__; jobs, sweep and the commands
    depend on options, never the other way round."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in ROOT.glob("drift/**/*.py")
    }
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    assert graph["drift.cli.options"] == set()
    assert not [m for m, deps in graph.items() if "drift.__main__" in deps]
    mine = [
        "drift.cli.options",
        "drift.cli.jobs",
        "drift.cli.sweep",
        "drift.interp.windows",
        "drift.cli.commands",
    ]
    mine += [m for m in modules if m.startswith("drift.cli.commands.")]

    def reaches(start: str, goal: str, seen: set) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    assert not [m for m in mine if reaches(m, m, set())]


def _subcommand_flags() -> dict[str, list[tuple]]:
    """Every option string of every subcommand: (command, dest, action, type, nargs, help's meaning)."""
    import argparse
    import re

    from drift.__main__ import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags: dict[str, list[tuple]] = {}
    for command, parser in sub.choices.items():
        for a in parser._actions:
            meaning = a.help
            if meaning and meaning != argparse.SUPPRESS:  # a default and a context may differ
                meaning = re.sub(r"\s*\((default|e\.g\.)[^)]*\)", "", meaning)
                meaning = re.sub(r"^with --[\w-]+: ", "", meaning)
            kind = getattr(a.type, "__name__", a.type)
            for flag in a.option_strings:
                flags.setdefault(flag, []).append((command, a.dest, type(a).__name__, kind, a.nargs, meaning))
    return flags


def test_every_flag_has_one_name_one_type_and_one_meaning_across_subcommands():
    flags = _subcommand_flags()
    assert len(flags) > 50 and {"--out", "--out-dir", "--editor", "--sadr", "-q", "-v"} <= set(flags)
    differing = {flag: uses for flag, uses in flags.items() if len({u[1:] for u in uses}) > 1}
    assert not differing, differing


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbosity_flags_work_before_and_after_the_subcommand(where):
    from drift.__main__ import build_parser

    flags = ["-q"] if where == "before" else []
    rest = [] if where == "before" else ["-q"]
    args = build_parser().parse_args([*flags, "eval", "--out", "r.json", *rest])
    assert args.quiet is True and args.verbosity == 0
    args = build_parser().parse_args(["eval", "--out", "r.json", "-vv"])
    assert args.verbosity == 2 and args.quiet is False


# A sweep file's value and the same flag on the command line: (key = value in TOML, the flag's
# arguments, the command they go to). Each is refused before torch loads, by the same check.
SPEC_AND_FLAG = [
    ("seed = 1.5", ["--seed", "1.5"], "eval"),
    ("seed = 1e23", ["--seed", "1e+23"], "eval"),
    ("limit = true", ["--limit", "True"], "eval"),
    ('chunk = "abc"', ["--chunk", "abc"], "sweep"),
    ("hp = { lr = nan }", ["--hp", "lr=nan"], "eval"),
    ("hp = { lr = 1e999 }", ["--hp", "lr=inf"], "eval"),
    ("sadr = inf", ["--sadr", "inf"], "eval"),
]


@pytest.mark.parametrize("line, flag, command", SPEC_AND_FLAG, ids=[s for s, _, _ in SPEC_AND_FLAG])
def test_a_sweep_value_is_refused_as_the_same_flag_is_before_torch_loads(tmp_path, line, flag, command):
    """47.16: a spec accepted ``seed = 1.5`` (ran with seed 1), ``limit = true`` (one case),
    ``chunk = "abc"`` (a traceback) and ``hp = {lr = nan}`` (refused only after the model loaded)."""
    spec = tmp_path / "s.toml"
    spec.write_text(f'editor = "rome"\nno_fluency = true\n{line}\n[[run]]\nname = "r"\n')
    argv = ["eval", "--editor", "rome", *flag, "--out", str(tmp_path / "x.json")]
    if command == "sweep":
        argv = ["sweep", str(spec), *flag, "--out-dir", str(tmp_path / "o")]
    code = (
        "import sys\nfrom drift.__main__ import cli\n"
        "def run(argv):\n    try:\n        return cli(argv)\n"
        "    except SystemExit as e:\n        return e.code\n"
        f"print(run({['sweep', str(spec), '--out-dir', str(tmp_path / 'o')]!r}), 'torch' in sys.modules)\n"
        f"print(run({argv!r}), 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.stdout.split() == ["2", "False", "2", "False"], done.stdout + done.stderr
    from_spec, from_flag = done.stderr.strip().splitlines()  # one line each
    key = line.split()[0]
    assert from_spec.startswith("error: sweep: ") and key in from_spec
    reason = from_flag.removeprefix("error: ").split(" (see ")[0].replace(f"--{key}", key)
    assert reason in from_spec, (from_spec, from_flag)  # the same check, naming the key and the value
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.json").exists()


def test_a_seed_is_refused_unless_every_seed_derived_from_it_fits_torch():
    """The largest seed ``--seed`` takes still seeds each case's drop-and-rescale mask; the next
    power of two that numpy would take (2**32 - 1) already overflows torch's generator there."""
    import torch

    from drift.editors.base import Edit, WeightDelta
    from drift.editors.fusion import case_seed, drop_and_rescale

    edit = Edit([WeightDelta("mlp_out", i, torch.ones(4, 4)) for i in range(3)])
    assert O.seed_value(str(O.SEED_MAX)) == O.SEED_MAX
    case = "a-case-id"
    worst = O.SEED_MAX * 7919 + 2**32 - 1  # case_seed with the largest salt a case id can give
    assert case_seed(case, O.SEED_MAX) <= worst
    dropped = drop_and_rescale(edit, 0.5, seed=worst)
    assert all(torch.isfinite(d.delta).all() for d in dropped.deltas)
    with pytest.raises((RuntimeError, ValueError), match="[Oo]verflow"):
        drop_and_rescale(edit, 0.5, seed=case_seed(case, 2**32 - 1))
    for bad in ("1.5", "True", str(O.SEED_MAX + 1), "-1"):
        with pytest.raises(Exception, match=r"expected a whole number in \[0, 2147483647\]"):
            O.seed_value(bad)
