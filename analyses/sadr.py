"""SADR's tables and figures: the main paper's Table 3, Fig. 6 and Fig. 7 on one model.

The same command as ``python -m drift sadr`` (drift/cli/commands/sadr.py holds the code):

    python analyses/sadr.py                                   # default model, built-in cases, ROME
    python analyses/sadr.py --editors rome,memit,pmet \
        --data ../shared/data/counterfact-merged-dev.json --limit 200
    python analyses/sadr.py --gamma 1e-2,1e-1 ...             # one Table 3 row per γ (the paper's scale)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drift.cli.commands import script  # noqa: E402
from drift.cli.commands.sadr import TABLE, main, parse, run  # noqa: E402

__all__ = ["TABLE", "main", "parse", "run"]

if __name__ == "__main__":
    script(main)
