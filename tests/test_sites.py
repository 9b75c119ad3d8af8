"""Sites and weights: named apart, printed as "name@layer" and read back, old strings included."""

from __future__ import annotations

import pytest

from drift.model.sites import HOOK_NAMES, WEIGHTS, Site, Weight


@pytest.mark.parametrize("kind", sorted(HOOK_NAMES))
def test_every_site_prints_and_parses_back(kind):
    site = Site(kind) if kind == "embed" else Site(kind, 3)
    assert Site.parse(str(site)) == site
    assert Site.of(str(site)) == Site.of(tuple(site)) == site
    assert "{layer}" not in site.hook_name


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_every_weight_prints_and_parses_back(name):
    w = Weight(name, 2)
    assert Weight.parse(str(w)) == w == Weight.of(("W_out" if name == "W_out" else "W_O", 2))


def test_weight_strings_in_files_written_with_the_activation_names_still_read():
    assert Weight.parse("mlp_out@4") == Weight("W_out", 4)
    assert Weight.parse("attn_out@12") == Weight("W_O", 12)
    assert Weight("mlp_out", 4).path == "mlp.W_out"


def test_a_site_is_the_same_key_as_a_plain_pair():
    d = {Site("mlp_out", 4): 1}
    assert d[("mlp_out", 4)] == 1
    assert Site("mlp_out", 4) == ("mlp_out", 4)
    assert "mlp_out@4" == str(Site("mlp_out", 4))  # what optimise_targets' loss terms are keyed by


def test_a_weight_is_not_a_site_and_a_site_not_a_weight():
    with pytest.raises(ValueError, match="a weight is a drift.model.sites.Weight"):
        Site("W_out", 1)
    with pytest.raises(ValueError, match="unknown weight 'resid_pre'"):
        Weight("resid_pre", 1)


@pytest.mark.parametrize(
    "text, error",
    [
        ("mlp_out@x", "whole-number layer"),
        ("mlp_out", "takes a layer"),
        ("embed@0", "takes no layer"),
        ("nope@1", "unknown site"),
    ],
)
def test_bad_site_strings_are_refused_with_the_reason(text, error):
    with pytest.raises(ValueError, match=error):
        Site.parse(text)


def test_a_weight_needs_a_layer():
    with pytest.raises(ValueError, match="not 'name@layer'"):
        Weight.parse("W_out")


def test_sites_module_imports_nothing_heavy():
    """drift.model.sites itself needs neither torch nor TransformerLens (option parsing may use it)."""
    import subprocess
    import sys
    from pathlib import Path

    import drift.model.sites

    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('sites', {str(Path(drift.model.sites.__file__))!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted({'torch', 'transformer_lens'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("old, name", [("mlp_out", "W_out"), ("attn_out", "W_O")])
def test_a_weight_delta_holds_the_weights_one_name_and_results_keep_theirs(old, name):
    """One name per weight: a delta given the older name holds the weight's own, and prints and
    fingerprints the same whichever name it was given; results files name it as they always have."""
    import torch

    from drift.editors.base import Edit, WeightDelta

    given_old, given_new = WeightDelta(old, 4, torch.ones(2)), WeightDelta(name, 4, torch.ones(2))
    assert given_old.which == given_new.which == name and given_old.weight == Weight(name, 4)
    assert repr(given_old).startswith(f"WeightDelta({name}@4,")
    assert Edit([given_old]).fingerprint() == Edit([given_new]).fingerprint()
    assert Weight(name, 4).result_name == f"{old}@4" and Weight.parse(f"{old}@4").result_name == f"{old}@4"
    with pytest.raises(ValueError, match="unknown weight 'resid_pre'"):
        WeightDelta("resid_pre", 4, torch.ones(2))


def test_an_edits_relative_change_is_keyed_as_committed_results_are(tiny):
    """``edit_summary`` writes ``"mlp_out@L"``, the key committed results files hold, for a delta
    of ``W_out``."""
    import torch

    from drift.editors.base import Edit, WeightDelta
    from drift.evaluation.evaluate import edit_summary

    edit = Edit([WeightDelta("W_out", 1, torch.ones_like(tiny.weight("W_out", 1)))])
    with edit.applied(tiny):
        assert list(edit_summary(tiny, edit)["relative_change"]) == ["mlp_out@1"]
