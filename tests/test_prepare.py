"""``drift prepare``: the one-time work of a model's first edits, done up front and cached."""

from __future__ import annotations

import pytest

from drift.__main__ import cli
from drift.cli.commands.prepare import prepare, stats_layers


def test_stats_layers_is_the_union_of_the_editors_preset_layers(tiny):
    from drift.editors.memit import preset as memit_preset
    from drift.editors.rome import preset as rome_preset

    assert stats_layers(tiny, ("rome",)) == [rome_preset(tiny).layer]
    assert stats_layers(tiny, ("memit", "rome")) == sorted(
        set(memit_preset(tiny).layers) | {rome_preset(tiny).layer}
    )
    with pytest.raises(ValueError, match="unknown editor 'romee'"):
        stats_layers(tiny, ("romee",))


def test_prepare_caches_what_the_first_edit_would_compute(tiny, monkeypatch, tmp_path):
    """After ``prepare`` the editor's first edit computes no statistics and samples no prefixes."""
    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))  # an empty cache: prepare must fill it
    from drift.data import load_cases
    from drift.editors import context, stats
    from drift.editors.rome import compute_rome

    done = prepare(tiny, ("rome",))
    assert done["layers"] == stats_layers(tiny, ("rome",)) and done["contexts"] == [[[5, 10], [10, 10]]]
    monkeypatch.setattr(stats, "_accumulate", lambda *a, **k: pytest.fail("statistics computed again"))
    monkeypatch.setattr(tiny, "sample", lambda *a, **k: pytest.fail("prefixes sampled again"))
    assert context.generated_prefixes(tiny, context.ROME_CONTEXT)[0] == [""]
    compute_rome(tiny, load_cases("builtin")[0])


def test_prepare_command_names_a_bad_editor(capsys):
    assert cli(["prepare", "--editors", "rome,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
