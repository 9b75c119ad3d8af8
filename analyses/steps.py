"""ROME at 20 steps against 80 without early stopping: does more optimisation keep the edit?

The same command as ``python -m drift steps`` (drift/cli/commands/steps.py holds the code):

    python analyses/steps.py --config earlier --limit 8
    python analyses/steps.py --config faithful --limit 3
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drift.cli.commands import script  # noqa: E402
from drift.cli.commands.steps import EARLIER, main, one, parse, run  # noqa: E402

__all__ = ["EARLIER", "main", "one", "parse", "run"]

if __name__ == "__main__":
    script(main)
