"""The parser of an analysis script (``analyses/NAME.py``): a subcommand's options, on a parser
of the script's own, with ``-v``/``-q``. Each analysis command's ``parse(argv)`` is this with its
script's name, its module docstring and its ``add_options``.

Example:
    >>> def add_options(p):
    ...     p.add_argument("--limit", type=int, default=3)
    >>> args = parse_script("analyses/x.py", "A script.\\n\\nMore.", add_options, ["--limit", "5", "-q"])
    >>> args.limit, args.quiet, args.verbosity
    (5, True, 0)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from drift.cli import options as O


def parse_script(
    prog: str,
    doc: str,
    add_options: Callable[[argparse.ArgumentParser], None],
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """``argv`` (default: the process's) parsed by a parser named ``prog``, described by the first
    line of ``doc`` (the command module's docstring), with ``add_options``'s options and the
    top-level ``-v``/``-q``."""
    p = O.parser(prog, doc.split("\n")[0])
    add_options(p)
    O.add_verbosity(p, top=True)
    return p.parse_args(argv)
