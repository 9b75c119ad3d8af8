"""ROME and ROME-AWD: the rank-one algebra, efficacy on the real model, exact removal, failures."""

from __future__ import annotations

import pytest
import torch

from drift.data import parse_case
from drift.editors.base import Edit
from drift.editors.objectives import LossTerm
from drift.editors.rome import ROMEHParams, compute_rome, preset, rank_one_delta
from drift.editors.target import EditDiverged
from tests.conftest import weights_hash

EIFFEL = parse_case(
    {
        "case_id": "eiffel",
        "requested_rewrite": {
            "prompt": "The Eiffel Tower is located in the city of",
            "subject": "Eiffel Tower",
            "target_new": "Rome",
            "target_true": "Paris",
        },
        "rewrite": {"prompts": ["The Eiffel Tower is located in the city of"], "targets": ["Rome"]},
    }
)
CORPUS = tuple(
    [
        "The Colosseum is located in the city of Rome.",
        "Apple was founded by Steve Jobs in California.",
        "The official language of Brazil is Portuguese.",
        "Lionel Messi plays football.",
    ]
    * 20
)


def test_rank_one_update_maps_key_to_value():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(16, 8, generator=g)
    K = torch.randn(100, 16, generator=g)
    C = K.T @ K / 100
    k, v = torch.randn(16, generator=g), torch.randn(8, generator=g)
    dW = rank_one_delta(W, C, k, v)
    torch.testing.assert_close(k @ (W + dW), v, atol=1e-3, rtol=1e-3)
    assert torch.linalg.matrix_rank(dW) == 1


def test_rome_on_tiny_model_computes_without_changing_the_model(tiny):
    h0 = weights_hash(tiny)
    edit = compute_rome(tiny, EIFFEL, ROMEHParams(layer=1, steps=3, n_prefixes=2, stats_texts=CORPUS))
    assert weights_hash(tiny) == h0  # computing never changes the model
    assert isinstance(edit, Edit) and edit.deltas[0].delta.shape == (64, 32)
    assert len(edit.info["losses"]) == 3


class NaNAtStep(LossTerm):
    """A loss term that turns NaN at a given step, as a diverging objective would."""

    name = "nan"

    def __init__(self, at: int):
        self.at = at

    def __call__(self, step):
        return step.deltas["mlp_out@1"].sum() * (float("nan") if step.step == self.at else 0.0)


def test_nan_during_optimisation_is_reported_and_changes_nothing(tiny):
    h0 = weights_hash(tiny)
    hp = ROMEHParams(layer=1, steps=3, n_prefixes=2, stats_texts=CORPUS, extra_terms=(NaNAtStep(1),))
    with pytest.raises(EditDiverged, match="case eiffel diverged at step 1"):
        compute_rome(tiny, EIFFEL, hp)
    assert weights_hash(tiny) == h0


def test_subject_missing_from_prompt_is_named(tiny):
    bad = parse_case(
        {
            "case_id": 1,
            "requested_rewrite": {
                "prompt": "Eiffel Tower is in",
                "subject": "Eiffel Tower",
                "target_new": "Rome",
                "target_true": "Paris",
            },
        }
    )
    object.__setattr__(bad, "subject", "Louvre")
    with pytest.raises(ValueError, match="'Louvre' not found"):
        compute_rome(tiny, bad, ROMEHParams(layer=1, steps=1, n_prefixes=2, stats_texts=CORPUS))


@pytest.mark.xdist_group("rome_eiffel")
@pytest.mark.parametrize("awd", [False, True])
def test_rome_edits_the_real_model_and_is_removed_exactly(real, awd, request):
    h0 = weights_hash(real)
    p_before = real.target_prob(EIFFEL.prompt, "Rome")
    louvre = real.target_prob("The Louvre is located in the city of", "Paris")
    if awd:
        edit = compute_rome(real, EIFFEL, ROMEHParams(layer=4, block_attention_grad=True))
    else:  # the preset, ROMEHParams(layer=4): shared with other tests
        assert preset(real) == ROMEHParams(layer=4)
        edit = request.getfixturevalue("rome_eiffel")
    assert weights_hash(real) == h0
    with edit.applied(real):
        p_after = real.target_prob(EIFFEL.prompt, "Rome")
        if awd:  # no gradient through attention weights: a weaker edit (main paper App. D.4)
            assert p_after > 5 * p_before
        else:
            assert p_after > 0.5 > p_before
            assert p_after > real.target_prob(EIFFEL.prompt, "Paris")
        assert abs(real.target_prob("The Louvre is located in the city of", "Paris") - louvre) < 0.1
    assert weights_hash(real) == h0


def test_the_same_edit_twice_is_bit_identical(tiny):
    hp = ROMEHParams(layer=1, steps=3, n_prefixes=2, stats_texts=CORPUS)
    a, b = compute_rome(tiny, EIFFEL, hp), compute_rome(tiny, EIFFEL, hp)
    assert torch.equal(a.deltas[0].delta, b.deltas[0].delta)


@pytest.mark.xdist_group("rome_eiffel")
def test_more_steps_never_weaken_the_edit_of_the_rewrite_prompt(real, rome_eiffel):
    """Anchored at the bare prompt (as the reference code), the rewrite prompt gets exactly the
    optimised value, so running longer without early stopping cannot un-write the edit. (With the
    update solved at the averaged key instead, longer runs shrank δ and the bare prompt received a
    growing share of it wrongly: docs/fidelity.md, "The 80-step anomaly".)"""
    from dataclasses import replace

    hp = preset(real)  # 20 steps, early stop at 5e-2 (this edit stops early): the shared edit
    probs = {}
    for steps, edit in (
        (20, rome_eiffel),
        (30, compute_rome(real, EIFFEL, replace(hp, steps=30, early_stop=0.0))),
    ):
        with edit.applied(real):
            probs[steps] = real.target_prob(EIFFEL.prompt, "Rome")
    assert probs[20] > 0.5
    assert probs[30] >= probs[20] - 0.02, probs


def test_each_rows_subject_is_the_templates_slot_and_the_kl_row_reads_its_last_token(tiny):
    """The rows an edit optimises over, counted by hand: a subject that appears again later in the
    prompt ("Paris" in "Paris Hilton") is read at the template's slot behind each prefix, not at
    its last occurrence; the KL prompt "{subject} is a" reads the subject's last token and
    predicts from its own last token; each rewriting row predicts o_edit from the prompt's end."""
    from drift.data import EditCase
    from drift.editors.target import _case_rows

    case = EditCase.simple("{}, not Paris Hilton, is the capital of", "Paris", "Rome", "France")
    prefixes = ["", "Hi. "]
    rows = _case_rows(tiny, case, prefixes)
    slot = [len(tiny.encode(p + "Paris")) - 1 for p in prefixes]
    later = [len(tiny.encode(p + "Paris, not Paris")) - 1 for p in prefixes]
    assert rows.lookup[:2] == slot and slot != later
    assert rows.query[:2] == [len(tiny.encode(p + case.prompt)) - 1 for p in prefixes]
    assert rows.seqs[2] == tiny.encode("Paris is a")
    assert rows.lookup[2] == len(tiny.encode("Paris")) - 1
    assert rows.query[2] == len(tiny.encode("Paris is a")) - 1


def test_without_settings_rome_takes_its_preset_for_the_model(tiny, monkeypatch):
    import drift.editors.rome as rome

    asked = []
    small = ROMEHParams(layer=0, steps=2, n_prefixes=2, stats_texts=CORPUS)
    monkeypatch.setattr(rome, "preset", lambda model: asked.append(model) or small)
    edit = rome.compute_rome(tiny, EIFFEL)
    assert asked == [tiny] and edit.info["editor"] == "rome" and edit.deltas[0].layer == 0


@pytest.mark.parametrize("editor", ["rome", "memit"])
def test_each_edit_records_its_share_of_the_batchs_time(tiny, monkeypatch, editor):
    """A clock reading 100 s then 110 s: one case records 10 s, each of two cases 5 s."""
    from dataclasses import replace
    from types import SimpleNamespace

    import drift.editors.memit as memit
    import drift.editors.rome as rome

    module = rome if editor == "rome" else memit
    hp = (
        ROMEHParams(layer=0, steps=1, n_prefixes=2, stats_texts=CORPUS)
        if editor == "rome"
        else memit.MEMITHParams(layers=(0,), steps=1, n_prefixes=2, stats_texts=CORPUS)
    )
    many = getattr(module, f"compute_{editor}_many")
    for cases, each in (([EIFFEL], 10.0), ([EIFFEL, replace(EIFFEL, case_id="again")], 5.0)):
        monkeypatch.setattr(module, "time", SimpleNamespace(perf_counter=iter([100.0, 110.0]).__next__))
        assert [e.info["seconds"] for e in many(tiny, cases, hp)] == [each] * len(cases)


def test_a_bad_anchor_is_refused_naming_the_choices(tiny):
    with pytest.raises(ValueError, match=r"^ROME anchor must be 'bare' or 'mean', got 'odd'$"):
        compute_rome(tiny, EIFFEL, ROMEHParams(layer=0, anchor="odd", stats_texts=CORPUS))
