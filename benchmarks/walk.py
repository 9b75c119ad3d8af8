"""The walk of one ``python -m drift eval`` case through drift's modules, measured.

Runs ``eval`` on one built-in case of the tiny test model (ROME, no fluency) under a profiler hook
and counts, over drift's own code only:

- modules: the distinct drift modules a call entered;
- run-state entries: the distinct calls into the run-state module (``--runs-module``) from another
  module, each a (calling function, called function) pair: a place a reader must follow into it;
- crossings: the distinct (calling function, called function) pairs between two drift modules.

    python benchmarks/walk.py                          # this checkout
    python benchmarks/walk.py --runs-module drift.runs # a checkout from before the layered packages

docs/design.md quotes its output for the layout before and after the redesign.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs-module", default="drift.cli.runs", help="the run-state module")
    a = p.parse_args()
    import drift  # noqa: F401  (imported before the hook: its own import is not the walk)
    from drift.__main__ import main as drift_main

    try:
        from drift.model.tiny import tiny_folder
    except ImportError:  # the flat layout
        from drift.tiny import tiny_folder
    model_dir = tiny_folder()
    out = Path(tempfile.mkdtemp()) / "walk.json"
    argv = ["-q", "eval", "--model", str(model_dir), "--editor", "rome", "--limit", "1"]
    argv += ["--no-fluency", "--out", str(out)]

    modules: Counter = Counter()
    crossings: set = set()

    def name_of(frame) -> str | None:
        name = frame.f_globals.get("__name__", "")
        return name if name == "drift" or name.startswith("drift.") else None

    def hook(frame, event, arg):
        if event != "call":
            return
        callee = name_of(frame)
        if callee is None:
            return
        modules[callee] += 1
        back = frame.f_back
        caller = name_of(back) if back is not None else None
        if caller is not None and caller != callee:
            crossings.add((caller, back.f_code.co_name, callee, frame.f_code.co_name))

    sys.setprofile(hook)
    try:
        drift_main(argv)
    finally:
        sys.setprofile(None)
    print(f"modules entered: {len(modules)}")
    entries = sorted(c for c in crossings if c[2] == a.runs_module)
    print(f"entries into {a.runs_module} from other modules: {len(entries)}")
    for caller, fn, _, callee_fn in entries:
        print(f"  {caller}.{fn} -> {callee_fn}")
    print(f"distinct calls crossing between drift modules: {len(crossings)}")


if __name__ == "__main__":
    main()
