"""Sequential editing: edits stack, checkpoints evaluate earlier edits, the weights come back."""

from __future__ import annotations

import pytest

from drift.data import parse_case
from drift.editors.fusion import drop_and_rescale
from drift.editors.rome import ROMEHParams, compute_rome
from drift.sequential import sequential_edits
from tests.conftest import weights_hash
from tests.test_rome import CORPUS

CASES = [parse_case({
    "case_id": i,
    "requested_rewrite": {"prompt": f"The {s} is located in", "subject": s, "target_new": new, "target_true": old},
    "rewrite": {"prompts": [f"The {s} is located in"], "targets": [new]},
}) for i, (s, old, new) in enumerate([("Eiffel Tower", "Paris", "Rome"), ("Colosseum", "Rome", "Athens"),
                                      ("Louvre", "Paris", "Berlin")])]
HP = ROMEHParams(layer=1, steps=2, n_prefixes=2, stats_texts=CORPUS)


def test_edits_stack_and_are_all_removed_at_the_end(tiny):
    h0 = weights_hash(tiny)
    seen = []

    def compute(model, case):
        seen.append(weights_hash(model))  # each edit is computed on the model carrying the earlier ones
        return compute_rome(model, case, HP)

    rows = sequential_edits(tiny, CASES, compute, checkpoints=(1, 3), progress=False,
                            fuse=lambda e: drop_and_rescale(e, 0.5, seed=0))
    assert [r["n_edits"] for r in rows] == [1, 3]
    assert [len(r["cases"]) for r in rows] == [1, 3] and "ES" in rows[1]["summary"]
    assert seen[0] == h0 and len(set(seen)) == 3
    assert weights_hash(tiny) == h0


def test_interruption_mid_run_restores_the_weights(tiny):
    h0 = weights_hash(tiny)
    calls = {"n": 0}

    def compute(model, case):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return compute_rome(model, case, HP)

    with pytest.raises(KeyboardInterrupt):
        sequential_edits(tiny, CASES, compute, checkpoints=(1,), progress=False)
    assert weights_hash(tiny) == h0
