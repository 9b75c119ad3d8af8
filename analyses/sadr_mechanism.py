"""What SADR does inside ROME at the paper's setting: loss terms, restrained heads, drift after.

The same command as ``python -m drift mechanism`` (drift/cli/commands/mechanism.py holds the code):

    python analyses/sadr_mechanism.py --limit 10 --out-dir figures/sadr_mechanism
    python analyses/sadr_mechanism.py --data CASES.json --ids unseen-eval.json --limit 10 --control
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drift.cli.commands import script  # noqa: E402
from drift.cli.commands.mechanism import chosen_ids, draw, main, one_case, parse, run, summarise  # noqa: E402

__all__ = ["chosen_ids", "draw", "main", "one_case", "parse", "run", "summarise"]

if __name__ == "__main__":
    script(main)
