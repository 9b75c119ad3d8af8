"""The command line's one parser and its one dispatch: ``python -m drift COMMAND``.

Every subcommand is a module of :mod:`drift.cli.commands` with ``add_options(parser)`` and
``run(args)``, registered in :data:`drift.cli.commands.COMMANDS`; this module only builds the parser
from that table, sets the verbosity and calls ``run``. ``-v``/``-q`` are accepted before or after
the subcommand. A user's mistake is one line ``error: ...`` and exit status 2 (:func:`cli`).

Example:
    >>> args = build_parser().parse_args(["eval", "--editor", "rome", "--out", "r.json", "-q"])
    >>> args.command, args.editor, args.quiet
    ('eval', 'rome', True)
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from drift.cli import commands
from drift.cli import options as O


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: each registered command's options under its name."""
    parser = O.parser(
        "python -m drift",
        "drift: mechanistic interpretability of knowledge editing.",
    )
    O.add_verbosity(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=O.Parser)
    for name, (module, help_text) in commands.COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_options(p)
        O.add_verbosity(p, top=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; its exit status."""
    args = build_parser().parse_args(argv)
    from drift.util import progress

    progress.configure(-1 if args.quiet else args.verbosity)
    result = importlib.import_module(commands.COMMANDS[args.command][0]).run(args)
    return result if isinstance(result, int) else 0


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def cli(argv: list[str] | None = None) -> int:
    """The console entry: :func:`main`, with a user's mistake (bad file, option, case, model name,
    damaged cache) printed as one line ``error: ...`` and exit status 2 instead of a traceback,
    and Ctrl-C as one line and status 130 (finished cases stay saved; the same command resumes)."""
    try:
        return main(argv)
    except KeyboardInterrupt as e:
        saved = f"{e}; " if str(e) else "finished cases are saved; "
        print(f"interrupted; {saved}run the same command again to resume", file=sys.stderr)
        return 130
    except O.OptionError:  # the parser has printed it
        return 2
    except OSError as e:  # a full disk or a folder that refuses writes: finished cases stay logged
        if e.errno not in WRITE_ERRORS:
            if O.user_error(e):
                print(f"error: {e}", file=sys.stderr)
                return 2
            raise
        where = f" {e.filename}" if e.filename else ""
        print(
            f"error: cannot write{where}: {e.strerror}; finished cases stay saved: free space (or set "
            "--out, DRIFT_CACHE to a writable place) and run the same command again",
            file=sys.stderr,
        )
        return 2
    except Exception as e:
        if not O.user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
