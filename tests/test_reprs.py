"""Readable reprs: an edit, a case and results print on a line or two, tensors by shape only."""

from __future__ import annotations

import drift
from drift.data import load_cases
from drift.interp import tracing
from drift.interp.attention_drift import measure


def test_edit_case_and_results_print_without_tensor_dumps(tiny):
    case = load_cases("builtin")[0]
    assert repr(case) == (
        "EditCase('0': 'The Eiffel Tower is located in the city of' Paris -> Rome, subject 'Eiffel Tower'; "
        "rewrite 1, paraphrase 2, neighborhood 4, relation 2, generation 3)"
    )
    edit = drift.edit(tiny, case.prompt, subject=case.subject, target=case.o_edit, layer=0, steps=2)
    assert repr(edit).startswith("Edit(rome: W_out@0 Tensor[64, 32] norm ")
    assert repr(edit).endswith(" s)") and "2 passes" in repr(edit)
    assert repr(edit.deltas[0]).startswith("WeightDelta(W_out@0, Tensor[64, 32], norm ")
    p = tracing.distracting_prompt(tiny, case)
    results = [p, tracing.attention_patching(tiny, edit, p, window=1), measure(tiny, edit, p, case.o_edit)]
    results.append(drift.score_targets(tiny, [case.prompt], ["Paris"]))
    for r in results:
        text = repr(r)
        assert "tensor(" not in text and len(text) < 400, text
    assert "tokens=Tensor[1, 41] int64" in repr(p)
    assert repr(tiny).startswith("drift.Model(") and "layers=2" in repr(tiny)


def test_an_edits_repr_lists_its_deltas_up_to_a_few_then_counts_the_rest():
    import torch

    from drift.editors.base import Edit, WeightDelta
    from drift.util.reprs import ITEMS

    deltas = [WeightDelta("mlp_out", l, torch.full((2, 3), 0.5)) for l in range(ITEMS + 2)]
    one = "Tensor[2, 3] norm 1.22"  # √6 · 0.5
    shown = ", ".join(f"W_out@{l} {one}" for l in range(ITEMS))
    assert repr(Edit(deltas)) == f"Edit(custom: {shown}, … 2 more)"
    info = {"editor": "adaple", "losses": [{}, {}], "seconds": 2.25, "fusion": {"drop_and_rescale": 0.8}}
    assert repr(Edit(deltas[:1], info)) == (
        f"Edit(adaple: W_out@0 {one}; 2 passes, 2.2 s, fusion {{drop_and_rescale: 0.8}})"
    )
    assert repr(Edit([])) == "Edit(custom: no deltas)"
    assert repr(Edit(deltas[:ITEMS])).endswith(f"W_out@{ITEMS - 1} {one})")
