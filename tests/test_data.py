"""Case loaders: both schemas, absent tasks skipped, malformed input named."""

from __future__ import annotations

import json

import pytest

from drift.data import CaseError, load_cases, parse_case
from tests.conftest import DEV_SET

MERGED = {
    "case_id": 7,
    "requested_rewrite": {
        "prompt": "The Eiffel Tower is located in",
        "subject": "Eiffel Tower",
        "target_new": "Rome",
        "target_true": "Paris",
    },
    "rewrite": {"prompts": ["The Eiffel Tower is located in"], "targets": ["Rome"]},
    "l-neighbor": {"prompts": ["The Louvre is located in"], "targets": ["Paris"]},
    "l-relation": {"prompts": [], "targets": []},
}
ORIGINAL = {
    "case_id": 3,
    "requested_rewrite": {
        "prompt": "{} is located in",
        "subject": "The Eiffel Tower",
        "target_new": {"str": "Rome"},
        "target_true": {"str": "Paris"},
    },
    "paraphrase_prompts": ["Where is the Eiffel Tower? The Eiffel Tower is in"],
    "neighborhood_prompts": ["The Louvre is located in"],
    "generation_prompts": ["The Eiffel Tower is"],
}


def test_merged_schema_and_absent_tasks():
    c = parse_case(MERGED)
    assert (c.case_id, c.subject, c.o_true, c.o_edit) == ("7", "Eiffel Tower", "Paris", "Rome")
    assert c.neighborhood[0].answer == "Paris"
    assert c.relation is None and c.paraphrase is None  # empty or missing: skipped, not faked
    assert c.distracting[0].prompt == "The Eiffel Tower is located in Rome. The Louvre is located in"


def test_original_schema():
    c = parse_case(ORIGINAL)
    assert c.prompt == "The Eiffel Tower is located in" and c.o_edit == "Rome"
    assert c.neighborhood[0].answer == "Paris" and c.relation is None
    assert c.generation == ("The Eiffel Tower is",)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("requested_rewrite"), "case 7: missing field 'requested_rewrite'"),
        (
            lambda d: d["requested_rewrite"].pop("target_new"),
            "case 7: missing field 'requested_rewrite.target_new'",
        ),
        (
            lambda d: d["requested_rewrite"].update(target_new=""),
            "case 7: field 'requested_rewrite.target_new' is empty",
        ),
        (lambda d: d["requested_rewrite"].update(target_new="  "), "'requested_rewrite.target_new' is empty"),
        (
            lambda d: d["requested_rewrite"].update(target_new=3),
            "'requested_rewrite.target_new' must be str, got int",
        ),
        (lambda d: d["requested_rewrite"].update(target_new="paris"), "target_new equals target_true"),
        (lambda d: d["requested_rewrite"].update(subject="Louvre"), "'Louvre' is not in the prompt"),
        (
            lambda d: d.update({"l-neighbor": {"prompts": ["a"], "targets": ["b", "c"]}}),
            "1 prompts but 2 targets",
        ),
        (
            lambda d: d.update({"l-neighbor": {"prompts": ["a", 5], "targets": ["b", "c"]}}),
            r"l-neighbor.prompts\[1\]",
        ),
        (lambda d: d.update({"l-neighbor": ["a"]}), "field 'l-neighbor' must be dict, got list"),
    ],
)
def test_malformed_case_names_case_and_field(mutate, message):
    raw = json.loads(json.dumps(MERGED))
    mutate(raw)
    with pytest.raises(CaseError, match=message):
        parse_case(raw)


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CaseError, match="bad.json is not valid JSON"):
        load_cases(bad)
    bad.write_text("[]")
    with pytest.raises(CaseError, match="holds no cases"):
        load_cases(bad)
    bad.write_text('"text"')
    with pytest.raises(CaseError, match="must hold a list of cases, got str"):
        load_cases(bad)
    with pytest.raises(CaseError, match="does not exist"):
        load_cases(tmp_path / "missing.json")


def test_builtin_set_shape():
    cases = load_cases("builtin")
    assert len(cases) >= 60
    assert len({c.relation_id for c in cases}) >= 8
    for c in cases:
        assert c.paraphrase and len(c.neighborhood) >= 3 and len(c.relation) >= 2 and c.generation, c.case_id


def test_builtin_paraphrases_follow_counterfact_format():
    """Paraphrases put words before the subject, as CounterFact's lead-in sentences do: on a model
    trained without BOS (the default model) a subject at position 0 sits on the attention sink and
    its MLP key is not the mid-sentence key an editor writes to, which would make PS measure the
    position instead of paraphrase generalisation. The lead-ins are not the editors' own context
    prefixes, so an editor is never fitted on the exact paraphrase context."""
    from drift.editors.context import FIXED_PREFIXES

    prefixes = [p.strip() for p in FIXED_PREFIXES if p.strip()]
    for c in load_cases("builtin"):
        for p in c.paraphrase:
            assert not p.startswith(c.subject), (c.case_id, p)
            assert not any(p.startswith(x) for x in prefixes), (c.case_id, p)


@pytest.mark.skipif(not DEV_SET.exists(), reason="../shared/data not beside the repo")
def test_dev_set_loads_every_case():
    cases = load_cases(DEV_SET)
    assert len(cases) == 1178
    assert sum(c.neighborhood is not None for c in cases) < 1178  # absent tasks are kept absent
    assert load_cases(DEV_SET, limit=5)[4].case_id == cases[4].case_id
