"""Readable reprs: an edit, a case and results print on a line or two, tensors by shape only."""

from __future__ import annotations

import drift
from drift import tracing
from drift.attention_drift import measure
from drift.data import load_cases


def test_edit_case_and_results_print_without_tensor_dumps(tiny):
    case = load_cases("builtin")[0]
    assert repr(case) == (
        "EditCase('0': 'The Eiffel Tower is located in the city of' Paris -> Rome, subject 'Eiffel Tower'; "
        "rewrite 1, paraphrase 2, neighborhood 4, relation 2, generation 3)"
    )
    edit = drift.edit(tiny, case.prompt, subject=case.subject, target=case.o_edit, layer=0, steps=2)
    assert repr(edit).startswith("Edit(rome: mlp_out@0 Tensor[64, 32] norm ")
    assert repr(edit).endswith(" s)") and "2 passes" in repr(edit)
    assert repr(edit.deltas[0]).startswith("WeightDelta(mlp_out@0, Tensor[64, 32], norm ")
    p = tracing.distracting_prompt(tiny, case)
    results = [p, tracing.attention_patching(tiny, edit, p, window=1), measure(tiny, edit, p, case.o_edit)]
    results.append(drift.score_targets(tiny, [case.prompt], ["Paris"]))
    for r in results:
        text = repr(r)
        assert "tensor(" not in text and len(text) < 400, text
    assert "tokens=Tensor[1, 41] int64" in repr(p)
    assert repr(tiny).startswith("drift.Model(") and "layers=2" in repr(tiny)
