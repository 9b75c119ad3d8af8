"""``python -m drift COMMAND``: the command line (:mod:`drift.cli.main`; one module per command in
:mod:`drift.cli.commands`; options in :mod:`drift.cli.options`). ``python -m drift --help`` lists the
commands."""

import sys

from drift.cli.main import build_parser, cli, main
from drift.cli.options import parse_hp

__all__ = ["build_parser", "cli", "main", "parse_hp"]

if __name__ == "__main__":
    sys.exit(cli())
