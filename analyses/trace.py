"""Where and why an edit fails on unrelated prompts: the main paper's §3 figures and tables.

The same command as ``python -m drift trace`` (drift/cli/commands/trace.py holds the code):

    python analyses/trace.py                       # default model, built-in cases, ROME
    python analyses/trace.py --data ../shared/data/counterfact-merged-dev.json --limit 100 --trace-cases 0
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drift.cli.commands import script  # noqa: E402
from drift.cli.commands.trace import _span, collect, figures, main, one_case, parse, run, summary  # noqa: E402

__all__ = ["_span", "collect", "figures", "main", "one_case", "parse", "run", "summary"]


def __getattr__(name: str):
    """The trace's domain functions (drift.interp.windows: ``best_window``, ``drift_rows``), imported on
    first use so that a bad option is refused before torch loads."""
    from drift.interp import windows

    if name in ("best_window", "drift_rows"):
        return getattr(windows, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    script(main)
