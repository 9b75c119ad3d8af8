"""Applying and removing weight deltas: bit-identical restore, also through errors."""

from __future__ import annotations

import pytest
import torch

from drift.editors.base import Edit, WeightDelta, applied_edits, remove_all
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
    assert not applied_edits(tiny)


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
        match=r"^this edit \(or a copy of it\) is already applied to the model's weights; remove it "
        r"first \(it would count twice\)$",
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
    assert weights_hash(tiny) == h2 and applied_edits(tiny) == [second]
    second.remove()
    assert weights_hash(tiny) == h0 and applied_edits(tiny) == []


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


TWICE = r"^this edit \(or a copy of it\) is already applied to the model's weights"


@pytest.mark.parametrize("route", ["load_model", "Model", "same"])
def test_an_edit_is_not_applied_twice_through_a_second_wrapper(tiny, route):
    """``m2 = drift.load_model(m.hooked)`` (or ``Model(m.hooked)``) shares ``m``'s weights: the edit
    applied through ``m`` is refused through ``m2``, and removing it through either wrapper's
    record gives the weights back bit for bit (before, both were accepted, and after removing
    both the edit stayed)."""
    import drift
    from drift.model.adapter import Model

    h0 = weights_hash(tiny)
    m2 = {"load_model": lambda: drift.load_model(tiny.hooked), "Model": lambda: Model(tiny.hooked)}.get(
        route, lambda: tiny
    )()
    edit = _edit(tiny)
    handle = edit.apply(tiny)
    h1 = weights_hash(tiny)
    with pytest.raises(RuntimeError, match=TWICE):
        edit.apply(m2)
    assert weights_hash(tiny) == h1 and applied_edits(m2) == [handle] == applied_edits(tiny)
    remove_all(m2)  # through the other wrapper
    assert weights_hash(tiny) == h0 and applied_edits(tiny) == [] and handle.removed


def test_a_copy_of_an_applied_edit_is_refused(tiny):
    """``copy.deepcopy(e)`` applied over ``e`` would make W0 + 2Δ; its equal deltas are refused,
    through any wrapper, also inside ``with e.applied(...)``; an edit with other deltas stacks."""
    import copy

    from drift.model.adapter import Model

    h0 = weights_hash(tiny)
    edit = _edit(tiny)
    twin = copy.deepcopy(edit)
    assert twin.fingerprint() == edit.fingerprint() != _edit(tiny, 0.2).fingerprint()
    with edit.applied(tiny):
        h1 = weights_hash(tiny)
        for wrapper in (tiny, Model(tiny.hooked)):
            with pytest.raises(RuntimeError, match=TWICE):
                twin.apply(wrapper)
            with pytest.raises(RuntimeError, match=TWICE):
                with twin.applied(wrapper):
                    pass
        assert weights_hash(tiny) == h1
        with _edit(tiny, 0.2).applied(Model(tiny.hooked)):
            assert weights_hash(tiny) not in (h0, h1)
        assert weights_hash(tiny) == h1
    assert weights_hash(tiny) == h0
    twin.apply(tiny).remove()  # once the first is out, the copy applies
    assert weights_hash(tiny) == h0
    nothing = Edit([WeightDelta("mlp_out", 0, torch.zeros(64, 32))])  # e.g. a sequential step's
    with nothing.applied(tiny), copy.deepcopy(nothing).applied(tiny):  # zero edit, twice: allowed
        assert weights_hash(tiny) == h0


def test_edits_through_two_wrappers_are_removed_in_order_from_either(tiny):
    """One stack for the weights: an edit applied through ``m2`` after one through ``m`` must be
    removed first, whichever wrapper's handle is used."""
    from drift.model.adapter import Model

    m2 = Model(tiny.hooked)
    h0 = weights_hash(tiny)
    a = _edit(tiny, 0.1).apply(tiny)
    b = _edit(tiny, 0.2).apply(m2)
    with pytest.raises(RuntimeError, match="remove the latest first"):
        a.remove()
    b.remove()
    a.remove()
    assert weights_hash(tiny) == h0 and applied_edits(m2) == []
