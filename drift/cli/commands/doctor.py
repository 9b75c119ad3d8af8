"""``python -m drift doctor``: every cache entry (converted models, key statistics, prefixes)
re-hashed in full; ``--fix`` deletes the damaged ones (each is rebuilt when next needed)."""

from __future__ import annotations

import argparse


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fix", action="store_true", help="delete damaged caches (rebuilt when next needed)")


def run(args: argparse.Namespace) -> int:
    """Status 1 when damage is left in place."""
    from drift.util.store import cache_root, doctor

    found = doctor(fix=args.fix)
    damaged = [(p, why) for p, why in found if why is not None]
    for path, why in found:
        state = "ok" if why is None else f"DAMAGED: {why}" + ("; deleted" if args.fix else "")
        print(f"{path}: {state}")
    print(f"checked {len(found)} cache entries in {cache_root()}; {len(damaged)} damaged")
    if damaged and not args.fix:
        print("run `python -m drift doctor --fix` to delete them (each is rebuilt when next needed)")
        return 1
    return 0
