"""``python -m drift demo``: the default model loaded, and its probabilities of a few facts."""

from __future__ import annotations

import argparse


def add_options(p: argparse.ArgumentParser) -> None:
    """No options of its own."""


def run(args: argparse.Namespace) -> int:
    import drift
    from drift.data import load_cases

    model = drift.load_model()
    print(model)
    for case in load_cases("builtin")[:8]:
        p_true = model.target_prob(case.prompt, case.o_true)
        p_edit = model.target_prob(case.prompt, case.o_edit)
        print(f"P({case.o_true!r:>14} | {case.prompt!r}) = {p_true:.3f}   P({case.o_edit!r}) = {p_edit:.3f}")
    return 0
