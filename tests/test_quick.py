"""drift.edit: one fact in one line, and EditCase.simple."""

from __future__ import annotations

import pytest

import drift
from drift.data import CaseError, EditCase
from drift.quick import greedy_answer


def test_simple_case_is_checked_like_a_loaded_one():
    case = EditCase.simple(
        "The Louvre is in", "Louvre", "Rome", "Paris", neighbours={"The Orsay museum is in": "Paris"}
    )
    assert (case.subject, case.o_edit, case.o_true) == ("Louvre", "Rome", "Paris")
    assert case.distracting[0].prompt == "The Louvre is in Rome. The Orsay museum is in"
    with pytest.raises(CaseError, match="requested_rewrite.subject 'Eiffel' is not in the prompt"):
        EditCase.simple("The Louvre is in", "Eiffel", "Rome", "Paris")
    with pytest.raises(CaseError, match="target_new"):
        EditCase.simple("The Louvre is in", "Louvre", " ", "Paris")


def test_edit_refuses_an_unknown_hyper_parameter_before_computing(tiny):
    with pytest.raises(ValueError, match="has no hyper-parameter 'stepz'"):
        drift.edit(tiny, "The Louvre is in", subject="Louvre", target="Rome", target_true="Paris", stepz=3)


def test_greedy_answer_is_the_models_own_first_word(tiny):
    answer = greedy_answer(tiny, "The Louvre is in")
    assert answer and " " not in answer


def test_one_line_edit_on_the_default_model(real):
    prompt = "The Colosseum is located in the city of"
    assert greedy_answer(real, prompt) == "Rome"
    e = drift.edit(real, prompt, subject="Colosseum", target="Athens")  # target_true: the model's "Rome"
    before = real.target_prob(prompt, "Athens")
    with e.applied(real):
        assert real.target_prob(prompt, "Athens") > max(0.5, real.target_prob(prompt, "Rome"))
    assert real.target_prob(prompt, "Athens") == before
