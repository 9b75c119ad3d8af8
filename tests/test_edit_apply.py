"""Applying and removing weight deltas: bit-identical restore, also through errors."""

from __future__ import annotations

import pytest
import torch

from drift.editors.base import Edit, WeightDelta, remove_all
from tests.conftest import weights_hash


def _edit(model, scale=0.1, layers=(0, 1)):
    g = torch.Generator().manual_seed(0)
    deltas = [WeightDelta("mlp_out", l, scale * torch.randn(64, 32, generator=g)) for l in layers]
    deltas.append(WeightDelta("attn_out", 1, scale * torch.randn(4, 8, 32, generator=g)))
    return Edit(deltas)


def _out(model):
    tokens, _ = model.pad([model.encode("The Eiffel Tower is located in")])
    return model.forward(tokens)


def test_context_manager_changes_then_restores_bit_for_bit(tiny):
    h0, before = weights_hash(tiny), _out(tiny)
    with _edit(tiny).applied(tiny):
        assert weights_hash(tiny) != h0
        assert not torch.allclose(_out(tiny), before)
    assert weights_hash(tiny) == h0
    assert torch.equal(_out(tiny), before)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_exception_inside_block_restores(tiny, exc):
    h0 = weights_hash(tiny)
    with pytest.raises(exc):
        with _edit(tiny).applied(tiny):
            raise exc("inside the edit")
    assert weights_hash(tiny) == h0


def test_interrupt_during_apply_restores_what_was_written(tiny, monkeypatch):
    h0 = weights_hash(tiny)
    edit = _edit(tiny)
    calls = {"n": 0}
    real_add = torch.Tensor.add_

    def flaky_add(self, other, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the first weight is already written
            raise KeyboardInterrupt
        return real_add(self, other, *a, **k)

    monkeypatch.setattr(torch.Tensor, "add_", flaky_add)
    with pytest.raises(KeyboardInterrupt):
        edit.apply(tiny)
    monkeypatch.undo()
    assert calls["n"] == 2
    assert weights_hash(tiny) == h0
    assert not getattr(tiny, "_applied_edits", [])


def test_bad_delta_changes_nothing(tiny):
    h0 = weights_hash(tiny)
    bad = Edit(
        [
            WeightDelta("mlp_out", 0, torch.ones(64, 32)),
            WeightDelta("mlp_out", 1, torch.full((64, 32), float("nan"))),
        ]
    )
    with pytest.raises(ValueError, match="NaN or inf"):
        bad.apply(tiny)
    wrong = Edit([WeightDelta("mlp_out", 0, torch.ones(32, 64))])
    with pytest.raises(ValueError, match=r"shape \(32, 64\), the weight has \(64, 32\)"):
        wrong.apply(tiny)
    assert weights_hash(tiny) == h0


def test_stacked_edits_remove_in_order(tiny):
    h0 = weights_hash(tiny)
    a = _edit(tiny, 0.1).apply(tiny)
    h1 = weights_hash(tiny)
    b = _edit(tiny, 0.2, layers=(1,)).apply(tiny)
    with pytest.raises(
        RuntimeError,
        match=r"^edits must be removed in reverse order of application \(remove the latest first\)$",
    ):
        a.remove()
    b.remove()
    assert weights_hash(tiny) == h1
    a.remove()
    assert weights_hash(tiny) == h0
    _edit(tiny).apply(tiny)
    _edit(tiny, 0.3).apply(tiny)
    remove_all(tiny)
    assert weights_hash(tiny) == h0


def test_an_edit_in_the_model_is_not_applied_again(tiny):
    h0 = weights_hash(tiny)
    edit = _edit(tiny)
    handle = edit.apply(tiny)
    assert handle.edit is edit and not handle.removed
    h1 = weights_hash(tiny)
    with pytest.raises(
        RuntimeError,
        match=r"^this edit is already applied to the model; remove it first \(it would count twice\)$",
    ):
        edit.apply(tiny)
    assert weights_hash(tiny) == h1
    handle.remove()
    assert handle.removed and weights_hash(tiny) == h0


def test_removing_an_edit_twice_leaves_a_later_edit_in_place(tiny):
    """A second ``remove()`` of the same handle does nothing: it neither restores its old weights
    over a later edit nor takes the later edit off the model's stack."""
    h0 = weights_hash(tiny)
    first = _edit(tiny).apply(tiny)
    first.remove()
    second = _edit(tiny, 0.3).apply(tiny)
    h2 = weights_hash(tiny)
    first.remove()
    assert weights_hash(tiny) == h2 and tiny._applied_edits == [second]
    second.remove()
    assert weights_hash(tiny) == h0 and tiny._applied_edits == []


def test_edits_add_up_to_one_edit_of_both_deltas(tiny):
    a, b = _edit(tiny, 0.1, layers=(0,)), _edit(tiny, 0.2, layers=(1,))
    a.info, b.info = {"editor": "rome", "seconds": 1.0}, {"editor": "memit"}
    both = a + b
    assert both.deltas == a.deltas + b.deltas and both.info == {"editor": "memit", "seconds": 1.0}
    h0 = weights_hash(tiny)
    with a.applied(tiny), b.applied(tiny):
        stacked = weights_hash(tiny)
    with both.applied(tiny):
        assert weights_hash(tiny) == stacked
    assert weights_hash(tiny) == h0
