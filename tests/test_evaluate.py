"""evaluate(): batching across cases equals one case at a time; fluency and perplexity paths."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from drift.data import load_cases, parse_case
from drift.evaluation.evaluate import evaluate, generate, perplexity
from drift.evaluation.spec import EvalSpec
from tests.test_data import MERGED

NO_FL = EvalSpec(fluency=False)


def _cases():
    a = parse_case(
        {
            **MERGED,
            "generation": {"prompts": ["The Eiffel Tower is"]},
            "o-commonsense": {
                "prompts": "How to cross a river.",
                "right": "Use a bridge.",
                "wrong": "Use a spoon.",
            },
        }
    )
    b = parse_case(
        {
            **MERGED,
            "case_id": 8,
            "l-relation": {"prompts": ["The Eiffel Tower is made of"], "targets": ["iron"]},
        }
    )
    return [a, b]


def test_grouped_equals_one_at_a_time(tiny):
    cases = _cases()
    together = evaluate(tiny, cases, spec=EvalSpec(fluency=False, batch_cases=8), progress=False)
    alone = [evaluate(tiny, [c], spec=NO_FL, progress=False)[0] for c in cases]
    for t, a in zip(together, alone):
        assert t["case_id"] == a["case_id"]
        for k, v in a["metrics"].items():
            assert t["metrics"][k] == pytest.approx(v, abs=1e-6)
    assert {"ES", "EM", "NS", "NM", "DNS", "DNM", "OS", "DOS"} <= set(together[0]["metrics"])
    assert "RS" in together[1]["metrics"] and "RS" not in together[0]["metrics"]


def test_fluency_and_perplexity(tiny):
    spec = EvalSpec(fluency=True, gen_tokens=6, ppl_texts=["Tokyo is in Japan."])
    rows = evaluate(tiny, _cases()[:1], spec=spec, progress=False)
    m = rows[0]["metrics"]
    assert m["FL"] >= 0 and math.isfinite(m["PPL"]) and m["PPL"] > 1
    assert rows[0]["generations"][0].startswith("The Eiffel Tower is")


def test_generation_is_seeded(tiny):
    a = generate(tiny, ["The capital of Japan is"], max_new_tokens=5, seed=3)
    assert a == generate(tiny, ["The capital of Japan is"], max_new_tokens=5, seed=3)


def test_perplexity_of_uniform_model_is_vocab_sized(tiny):
    # A random tiny model is close to uniform over its vocabulary.
    assert (
        0.5 * tiny.cfg.d_vocab
        < perplexity(tiny, ["The Colosseum is located in the city of Rome."])
        < 2 * tiny.cfg.d_vocab
    )


def test_edit_function_wraps_each_case(tiny):
    seen = []

    @contextlib.contextmanager
    def fake_edit(model, case):
        seen.append(case.case_id)
        yield

    evaluate(tiny, _cases(), fake_edit, NO_FL, progress=False)
    assert seen == ["7", "8"]


def test_same_seed_gives_the_same_metrics_twice(tiny):
    from drift.editors.base import Edit, WeightDelta

    @contextlib.contextmanager
    def edit(model, case):
        g = torch.Generator().manual_seed(0)
        e = Edit([WeightDelta("mlp_out", 1, torch.randn(64, 32, generator=g))])
        with e.applied(model):
            yield e

    cases = load_cases("builtin", limit=3)
    spec = EvalSpec(fluency=True, gen_tokens=8, seed=5)
    a = evaluate(tiny, cases, edit, spec, progress=False)
    b = evaluate(tiny, cases, edit, spec, progress=False)
    assert [r["metrics"] for r in a] == [r["metrics"] for r in b]
    assert [r.get("generations") for r in a] == [r.get("generations") for r in b]


def test_each_edited_case_records_how_much_its_edit_changed_the_weights(tiny):
    from drift.editors.base import Edit, WeightDelta

    W = tiny.weight("mlp_out", 1).detach().clone()
    delta = 0.1 * torch.randn_like(W)
    edit = Edit([WeightDelta("mlp_out", 1, delta)], {"seconds": 1.234, "losses": [{}, {}, {}]})
    rows = evaluate(tiny, _cases()[:1], lambda m, c: edit.applied(m), NO_FL, progress=False)
    got = rows[0]["edit"]
    assert got["relative_change"]["mlp_out@1"] == pytest.approx(float(delta.norm() / W.norm()), rel=1e-6)
    assert got["seconds"] == 1.23 and got["passes"] == 3
    assert "edit" not in evaluate(tiny, _cases()[:1], spec=NO_FL, progress=False)[0]


def test_too_short_perplexity_texts_are_refused_by_name_before_any_edit(tiny):
    """A text of one token has no predicted token: its PPL was NaN in every row (joined form) or
    a silent 1.0 (per-text form). Now refused, naming the text, before the first edit runs."""
    for form, texts, named in (
        ("reference", ["The"], "the 1 text(s) joined give 1: 'The'"),
        ("per-text", ["Tokyo is in Japan.", "The", "a"], "text 1 ('The') has 1, text 2 ('a') has 1"),
    ):
        with pytest.raises(
            ValueError,
            match=r"^perplexity needs at least 2 tokens.*" + named.replace("(", r"\(").replace(")", r"\)"),
        ):
            perplexity(tiny, texts, form=form)
        edits = []
        with pytest.raises(ValueError, match=r"^perplexity needs at least 2 tokens"):
            evaluate(
                tiny,
                _cases()[:1],
                edit=lambda m, c: edits.append(c) or contextlib.nullcontext(),
                spec=EvalSpec(fluency=False, ppl_texts=texts, ppl_form=form),
                progress=False,
            )
        assert edits == []
    with pytest.raises(ValueError, match="^perplexity needs at least one text$"):
        perplexity(tiny, [])
    assert math.isfinite(perplexity(tiny, ["Tokyo is in Japan.", "Rome"], form="per-text"))


def test_the_spec_is_checked_when_made_naming_the_field():
    for kw, named in (
        ({"fluency": "long"}, "fluency"),
        ({"ppl_form": "joined"}, "ppl_form"),
        ({"res": "exact"}, "res"),
        ({"scoring": "sum"}, "scoring"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_cases": 2.5}, "batch_cases"),
        ({"edit_batch": 0}, "edit_batch"),
        ({"gen_tokens": -1}, "gen_tokens"),
        ({"seed": "0"}, "seed"),
        ({"ppl_texts": "one text"}, "ppl_texts"),
        ({"ppl_texts": ["fine", 3]}, r"ppl_texts\[1\]"),
    ):
        with pytest.raises(ValueError, match=rf"^EvalSpec {named} must be"):
            EvalSpec(**kw)
    with pytest.raises(TypeError, match="references must be the ReferenceTexts"):
        EvalSpec(references={"P17": ["text"]})


def test_the_spec_is_frozen_normalised_and_shows_what_differs_from_the_defaults():
    import dataclasses

    spec = EvalSpec(fluency=None, ppl_texts=["Tokyo is in Japan."], edit_batch=4)
    assert spec.fluency is False and spec.ppl_texts == ("Tokyo is in Japan.",) and spec.fluency_form is None
    assert repr(spec) == "EvalSpec(fluency=False, ppl_texts=<1 texts>, edit_batch=4)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 1
    assert dataclasses.replace(spec, fluency=True).fluency == "reference"
    assert EvalSpec(ppl_texts=[]).ppl_texts is None and EvalSpec() == EvalSpec(fluency=True)
    short = EvalSpec(fluency="short", gen_prompts=1).fluency_form
    assert (short.prompts, short.new_tokens, short.length, short.words) == (1, 40, None, "whitespace")
    ref = EvalSpec().fluency_form
    assert (ref.prompts, ref.new_tokens, ref.length, ref.words) == (None, None, 100, "treebank")


def test_evaluate_takes_a_spec_and_names_anything_else(tiny):
    with pytest.raises(
        TypeError, match=r"spec must be an EvalSpec \(e.g. drift.EvalSpec\(fluency=False\)\), got dict"
    ):
        evaluate(tiny, _cases(), spec={"fluency": False})
    with pytest.raises(TypeError, match="fluency"):
        evaluate(tiny, _cases(), fluency=False)  # the settings are the spec's, not evaluate's
    rewrite = {**MERGED["requested_rewrite"], "target_new": "the old city of Rome"}
    long = parse_case({k: v for k, v in MERGED.items() if k != "rewrite"} | {"requested_rewrite": rewrite})
    product = evaluate(tiny, [long], spec=EvalSpec(fluency=False, scoring="product"), progress=False)
    mean = evaluate(tiny, [long], spec=NO_FL, progress=False)
    assert product[0]["metrics"]["EM"] != mean[0]["metrics"]["EM"]  # the spec's scoring is used
