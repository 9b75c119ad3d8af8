"""Sequential editing and knowledge attenuation (AdaPLE paper §3, §6, Fig. 3 and Fig. 6).

The same command as ``python -m drift sequential`` (drift/cli/commands/sequential.py holds the code):

    python analyses/sequential.py                       # MEMIT and AdaPLE, ±DR, 100 edits of the dev set
    python analyses/sequential.py --edits 25 --data builtin --sweep-edits 10      # a quick look
    python analyses/sequential.py --sadr 1e-3           # also each editor with SADR (±DR)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drift.cli.commands import script  # noqa: E402
from drift.cli.commands.sequential import Runs, label, main, parse, run, series, similarity  # noqa: E402

__all__ = ["Runs", "label", "main", "parse", "run", "series", "similarity"]

if __name__ == "__main__":
    script(main)
