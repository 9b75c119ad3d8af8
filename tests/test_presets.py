"""Settings per model: families found from any spelling of a model's name, each family's settings
equal to what the papers' reference ran, and ``--sadr`` resolved per model and editor.

The expected values are written out here from their sources (the main paper's App. C.2; the
reference repository's ``hparams/*/*.yaml`` as its ``examples/run_knowedit.py`` runs them, which
sets ``v_lr`` to ``--lr``, default 0.5, and ``v_num_grad_steps`` to ``--v_num_grad_steps``, default
20), not read from drift.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from types import SimpleNamespace

import pytest

from drift.editors import adaple, check_overrides, memit, pmet, presets, rome
from drift.editors.sadr import SADR, paper_setting


def fake_model(name: str, n_layers: int = 40, model_name: str | None = None) -> SimpleNamespace:
    """What ``preset()`` reads of a model: its ``name`` and ``cfg`` (``n_layers``, ``model_name``)."""
    return SimpleNamespace(name=name, cfg=SimpleNamespace(n_layers=n_layers, model_name=model_name))


@pytest.fixture
def notes(monkeypatch, caplog):
    """The INFO lines of drift.editors.presets, as if none had been written in this process."""
    monkeypatch.setattr(presets, "_NOTED", set())
    caplog.set_level(logging.INFO, logger="drift.editors.presets")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "drift.editors.presets"]

    return lines


# --- families -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, key",
    [
        ("openai-community/gpt2-xl", "gpt2-xl"),
        ("gpt2-xl", "gpt2-xl"),
        ("GPT2-XL", "gpt2-xl"),
        ("EleutherAI/gpt-j-6b", "gpt-j-6b"),
        ("EleutherAI/gpt-j-6B", "gpt-j-6b"),
        ("gptj-6B", "gpt-j-6b"),  # the reference's own label
        ("/data/models/GPT_J_6B/", "gpt-j-6b"),
        ("EleutherAI/gpt-neox-20b", "gpt-neox-20b"),
        ("meta-llama/Meta-Llama-3-8B", "llama-3-8b"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama-3-8b"),
        ("meta-llama/Llama-2-13b-hf", "llama-2-13b"),
        ("meta-llama/Llama-2-7b-hf", "llama-2-7b"),
        ("TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T", "tinyllama-1.1b"),
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "tinyllama-1.1b"),
        ("smollm2-135m", "smollm2-135m"),
        ("HuggingFaceTB/SmolLM2-135M", "smollm2-135m"),
    ],
)
def test_a_family_is_found_whatever_the_organisation_and_case(name, key):
    assert presets.family(name) == key


@pytest.mark.parametrize(
    "name", ["gpt2", "openai-community/gpt2-large", "EleutherAI/pythia-160m", "someone/new-model", ""]
)
def test_other_models_have_no_family(name):
    assert presets.family(name) is None


def test_a_local_folder_is_known_by_its_name_or_its_config(tmp_path):
    named = tmp_path / "gpt2-xl"
    named.mkdir()
    assert presets.family(str(named)) == "gpt2-xl"
    checkpoint = tmp_path / "checkpoint-500"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"_name_or_path": "EleutherAI/gpt-j-6B"}))
    assert presets.family(checkpoint) == "gpt-j-6b"  # a Path works as a str does
    assert rome.preset(fake_model(str(checkpoint), 28)).layer == 5
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert presets.family(str(broken)) is None


def test_a_model_is_known_by_its_name_else_its_configs_model_name():
    assert rome.preset(fake_model("openai-community/gpt2-xl", 48)).layer == 17
    assert rome.preset(fake_model("GPT2-XL", 48)).layer == 17
    assert rome.preset(fake_model("my-wrapped-model", 28, model_name="gpt-j-6B")).layer == 5


# --- each family's settings -----------------------------------------------------------------------

ROME_FIELDS = ("layer", "steps", "lr", "kl_factor", "weight_decay", "clamp_norm")
# hparams/ROME/<file>.yaml: layers, v_num_grad_steps (runner: 20), v_lr (runner: 0.5), kl_factor,
# v_weight_decay, clamp_norm_factor. GPT-NeoX-20B has no file: App. C.2's layer 5, GPT-J's file.
ROME = {
    "EleutherAI/gpt-j-6b": (5, 20, 0.5, 0.0625, 0.5, 4.0),
    "meta-llama/Meta-Llama-3-8B": (5, 20, 0.5, 0.0625, 1e-3, 4.0),  # the file's 25 steps: runner 20
    "EleutherAI/gpt-neox-20b": (5, 20, 0.5, 0.0625, 0.5, 4.0),
    "meta-llama/Llama-2-13b-hf": (6, 20, 0.5, 0.0625, 1e-3, 4.0),  # App. C.2 says layer 15
    "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T": (4, 20, 0.5, 0.0625, 0.5, 2.0),
    "openai-community/gpt2-xl": (17, 20, 0.5, 0.0625, 0.5, 4.0),  # ROME's published layer
    "smollm2-135m": (4, 20, 0.5, 0.0625, 0.5, 4.0),  # drift's default model, as before
}

RANGE_FIELDS = ("layers", "steps", "lr", "kl_factor", "weight_decay", "clamp_norm", "mom2_weight")
MEMIT = {
    "EleutherAI/gpt-j-6b": ((3, 4, 5, 6, 7, 8), 20, 0.5, 0.0625, 0.5, 0.75, 15000.0),
    "meta-llama/Meta-Llama-3-8B": ((4, 5, 6, 7, 8), 20, 0.5, 0.0625, 1e-3, 4.0, 15000.0),
    "EleutherAI/gpt-neox-20b": ((13, 14, 15, 16), 20, 0.5, 0.0625, 0.5, 0.75, 15000.0),
    "meta-llama/Llama-2-13b-hf": ((5, 6, 7, 8, 9), 20, 0.5, 0.0625, 1e-3, 4.0, 15000.0),
    "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T": ((3, 4, 5), 20, 0.5, 0.0625, 0.5, 8.0, 20000.0),
    "openai-community/gpt2-xl": ((13, 14, 15, 16, 17), 20, 0.5, 0.0625, 0.5, 0.75, 20000.0),
    "smollm2-135m": ((3, 4, 5), 20, 0.5, 0.0625, 0.5, 0.75, 2000.0),
}
PMET = {
    # hparams/PMET/gpt-j-6B.yaml says lr 0.2 and 30 steps; the runner overwrites both (0.5, 20)
    "EleutherAI/gpt-j-6b": ((3, 4, 5, 6, 7, 8), 20, 0.5, 1.0, 0.5, 0.75, 15000.0),
    "meta-llama/Meta-Llama-3-8B": ((4, 5, 6, 7, 8), 20, 0.5, 0.0625, 0.5, 4.0, 15000.0),
    "EleutherAI/gpt-neox-20b": ((13, 14, 15, 16), 20, 0.5, 0.0625, 0.5, 4.0, 15000.0),
    "meta-llama/Llama-2-13b-hf": ((7, 8, 9), 20, 0.5, 0.0625, 0.5, 4.0, 15000.0),
    "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T": ((3, 4, 5), 20, 0.5, 0.0625, 0.5, 4.0, 20000.0),
    "openai-community/gpt2-xl": ((13, 14, 15, 16, 17), 20, 0.5, 0.0625, 0.5, 4.0, 20000.0),
    "smollm2-135m": ((3, 4, 5), 20, 0.5, 0.0625, 0.5, 4.0, 2000.0),
}
ADAPLE_FIELDS = ("layers", "weight_decay", "mom2_weight", "drop_rate")
ADAPLE = {
    "EleutherAI/gpt-j-6b": ((3, 4, 5, 6, 7, 8), 0.5, 15000.0, 0.8),
    "meta-llama/Llama-2-7b-hf": ((4, 5, 6, 7, 8), 1e-3, 15000.0, 0.8),
    "EleutherAI/gpt-neox-20b": ((13, 14, 15, 16), 0.5, 15000.0, 0.8),
    "smollm2-135m": ((3, 4, 5), 0.5, 2000.0, 0.8),
}
CASES = (
    [(rome.preset, ROME_FIELDS, name, want) for name, want in ROME.items()]
    + [(memit.preset, RANGE_FIELDS, name, want) for name, want in MEMIT.items()]
    + [(pmet.preset, RANGE_FIELDS, name, want) for name, want in PMET.items()]
    + [(adaple.preset, ADAPLE_FIELDS, name, want) for name, want in ADAPLE.items()]
)


@pytest.mark.parametrize(
    "preset, fields, name, want", CASES, ids=[f"{p.__module__.split('.')[-1]}-{n}" for p, _, n, _ in CASES]
)
def test_each_family_gets_the_settings_the_reference_ran(preset, fields, name, want, notes):
    hp = preset(fake_model(name, n_layers=40))
    assert {f: getattr(hp, f) for f in fields} == dict(zip(fields, want))
    assert hp.extra_terms == ()
    assert notes() == []  # a known model: no note


def test_pmet_on_gpt_j_does_not_take_the_hparams_files_lr():
    assert pmet.preset(fake_model("EleutherAI/gpt-j-6B")).lr == 0.5


def test_every_setting_names_a_hyper_parameter_of_its_editor():
    for editor, table in presets.EDITOR_SETTINGS.items():
        for key, settings in table.items():
            assert key in presets.FAMILIES
            check_overrides(editor, settings)  # an unknown name or a wrong kind raises


# --- unknown models -------------------------------------------------------------------------------


def test_an_unknown_model_gets_the_defaults_and_one_note_naming_them(notes):
    model = fake_model("someone/new-model", n_layers=40)
    assert rome.preset(model) == dataclasses.replace(rome.ROMEHParams(), layer=6)
    assert memit.preset(model) == dataclasses.replace(memit.MEMITHParams(), layers=(4, 5, 6, 7))
    assert pmet.preset(model) == dataclasses.replace(pmet.PMETHParams(), layers=(4, 5, 6, 7))
    fallback = "; using the defaults (SmolLM2-135M's) with "
    assert notes() == [
        f"no rome preset for model 'someone/new-model'{fallback}layer 6 of 40",
        f"no memit preset for model 'someone/new-model'{fallback}layers 4-7 of 40",
        f"no pmet preset for model 'someone/new-model'{fallback}layers 4-7 of 40",
    ]
    rome.preset(model)  # once per model and editor: an evaluation asks for every case
    assert len(notes()) == 3


def test_a_known_family_without_a_setting_for_the_editor_says_so(notes):
    hp = adaple.preset(fake_model("meta-llama/Meta-Llama-3-8B", n_layers=32))
    assert hp.layers == (3, 4, 5)  # 10-17% of 32 layers
    assert notes() == [
        "no adaple preset for model 'meta-llama/Meta-Llama-3-8B' (Llama-3-8B); "
        "using the defaults (SmolLM2-135M's) with layers 3-5 of 32"
    ]


def test_no_note_is_kept_back_while_notes_are_silent(monkeypatch, caplog):
    monkeypatch.setattr(presets, "_NOTED", set())
    caplog.set_level(logging.WARNING, logger="drift.editors.presets")
    rome.preset(fake_model("someone/quiet-model"))
    caplog.set_level(logging.INFO, logger="drift.editors.presets")
    rome.preset(fake_model("someone/quiet-model"))
    assert [r.getMessage() for r in caplog.records if r.name == "drift.editors.presets"] == [
        "no rome preset for model 'someone/quiet-model'; "
        "using the defaults (SmolLM2-135M's) with layer 6 of 40"
    ]


# --- SADR -----------------------------------------------------------------------------------------

# main paper App. C.2: (γ, steps) per editor and model; the GPT-J rows are also the reference's
# examples/scripts/{rome,memit,pmet}.sh (attn_W_loss_weight 100, 50, 800 × 1e-4; 80, 20, 40 steps).
SADR_PAPER = {
    ("rome", "EleutherAI/gpt-j-6B"): (1e-2, 80),
    ("rome", "meta-llama/Meta-Llama-3-8B"): (4e-2, 80),
    ("rome", "EleutherAI/gpt-neox-20b"): (1e-2, 80),
    ("rome", "meta-llama/Llama-2-13b-hf"): (1e-2, 80),
    ("rome", "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"): (8e-2, 80),
    ("rome-awd", "meta-llama/Meta-Llama-3-8B"): (4e-2, 80),
    # the text adds lr 0.25; examples/scripts/memit.sh passes no --lr, so the runner ran 0.5
    ("memit", "EleutherAI/gpt-j-6B"): (5e-3, 20),
    ("memit", "meta-llama/Meta-Llama-3-8B"): (1e-2, 80),
    ("memit", "EleutherAI/gpt-neox-20b"): (5e-3, 80),
    ("memit", "meta-llama/Llama-2-13b-hf"): (4e-2, 80),
    ("memit", "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"): (8e-2, 80),
    ("pmet", "EleutherAI/gpt-j-6B"): (8e-2, 40),
    ("pmet", "meta-llama/Meta-Llama-3-8B"): (1e-2, 80),
    ("pmet", "EleutherAI/gpt-neox-20b"): (2e-3, 20),
    ("pmet", "meta-llama/Llama-2-13b-hf"): (5e-3, 20),
    ("pmet", "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T"): (8e-2, 40),
}
GPT_J = {"rome": (1e-2, 80), "memit": (5e-3, 20), "pmet": (8e-2, 40)}


@pytest.mark.parametrize("editor, name", sorted(SADR_PAPER))
def test_sadr_takes_the_papers_gamma_and_steps_for_each_model_and_editor(editor, name, notes):
    gamma, steps = SADR_PAPER[editor, name]
    assert paper_setting(editor, name) == {"gamma": gamma, "steps": steps}
    assert paper_setting(editor, fake_model(name.upper())) == {"gamma": gamma, "steps": steps}
    assert notes() == []


@pytest.mark.parametrize("editor", sorted(GPT_J))
def test_sadr_falls_back_to_gpt_js_setting_with_one_note(editor, notes):
    gamma, steps = GPT_J[editor]
    assert paper_setting(editor) == {"gamma": gamma, "steps": steps}  # no model: GPT-J's, silently
    assert notes() == []
    names = ["someone/new-model", "smollm2-135m", "openai-community/gpt2-xl"]
    if editor in ("rome", "memit"):  # SmolLM2-135M has its own rows (the validation grids' choices)
        names.remove("smollm2-135m")
    for name in names:
        assert paper_setting(editor, name) == {"gamma": gamma, "steps": steps}
    labels = {"smollm2-135m": " (SmolLM2-135M)", "openai-community/gpt2-xl": " (GPT-2-XL)"}
    assert notes() == [
        f"no {editor} SADR setting for model '{name}'{labels.get(name, '')}; "
        f"using GPT-J-6B's (gamma {gamma:g}, steps {steps})"
        for name in names
    ]


@pytest.mark.parametrize("name", ["smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_sadr_on_smollm2_rome_is_the_validation_grids_choice(name, notes):
    """``--sadr`` alone on the default model runs the point drift's validation grid chose (γ 4e-2
    at 20 steps: results/validation/rome_sadr_g0.04_s20.json, docs/results.md), not GPT-J's γ 1e-2
    at 80 steps, which failed the grid's rule."""
    import json
    from pathlib import Path

    import drift
    from drift.cli.commands.sadr import setting

    assert paper_setting("rome", name) == {"gamma": 4e-2, "steps": 20}
    assert paper_setting("rome-awd", name) == {"gamma": 4e-2, "steps": 20}
    # analyses/sadr.py's Table 3 row on the default model, when no --model is given
    assert setting("rome", drift.DEFAULT_MODEL) == ([4e-2], 20)
    assert notes() == []
    chosen = json.loads(
        (Path(__file__).parents[1] / "results/validation/rome_sadr_g0.04_s20.json").read_text()
    )
    assert (chosen["config"]["sadr"], chosen["config"]["steps"]) == (4e-2, 20)


@pytest.mark.parametrize("name", ["smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"])
def test_sadr_on_smollm2_memit_is_memits_own_grids_choice(name, notes):
    """MEMIT's validation grid (results/validation-memit) chose γ 4e-2 at 80 steps; ``--sadr``
    alone with MEMIT on the default model runs it, not GPT-J's γ 5e-3 at 20 steps."""
    import json
    from pathlib import Path

    import drift
    from drift.cli.commands.sadr import setting

    assert paper_setting("memit", name) == {"gamma": 4e-2, "steps": 80}
    assert setting("memit", drift.DEFAULT_MODEL) == ([4e-2], 80)
    assert paper_setting("pmet", "smollm2-135m") == {"gamma": 8e-2, "steps": 40}  # GPT-J's: no grid
    grid = Path(__file__).parents[1] / "results/validation-memit"
    chosen = json.loads((grid / "memit_sadr_g0.04_s80.json").read_text())
    assert (chosen["config"]["editor"], chosen["config"]["sadr"], chosen["config"]["steps"]) == (
        "memit",
        4e-2,
        80,
    )
    assert "pmet" in notes()[-1]


def test_sadr_has_no_setting_for_adaple():
    with pytest.raises(ValueError, match="no SADR setting for editor 'adaple'"):
        paper_setting("adaple", "EleutherAI/gpt-j-6B")


@pytest.fixture
def planned(monkeypatch, tmp_path):
    """``python -m drift eval ARGS``'s editor options, stopped before any model loads."""
    import drift.editors as editors
    from drift.__main__ import main

    seen: dict = {}

    def stop(name, **kw):
        seen.clear()
        seen.update(name=name, **kw)
        raise SystemExit(0)

    monkeypatch.setattr(editors, "get_editor", stop)

    def run(*args: str) -> dict:
        with pytest.raises(SystemExit):
            main(["eval", *args, "--out", str(tmp_path / "x.json")])
        return dict(seen)

    return run


@pytest.mark.parametrize(
    "model, editor, gamma, steps",
    [
        ("meta-llama/Meta-Llama-3-8B", "rome", 4e-2, 80),
        ("TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T", "memit", 8e-2, 80),
        ("EleutherAI/gpt-neox-20b", "pmet", 2e-3, 20),
        ("meta-llama/Llama-2-13b-hf", "pmet", 5e-3, 20),
        ("smollm2-135m", "memit", 4e-2, 80),  # MEMIT's own validation grid's choice
        ("smollm2-135m", "pmet", 8e-2, 40),  # no grid, no paper setting: GPT-J's
        (None, "rome", 4e-2, 20),  # the default model: its validation grid's choice (results/validation)
        ("EleutherAI/gpt-j-6b", "rome", 1e-2, 80),  # the paper's own
    ],
)
def test_sadr_alone_on_the_command_line_takes_the_models_setting(planned, model, editor, gamma, steps):
    seen = planned(*(["--model", model] if model else []), "--editor", editor, "--sadr")
    (term,) = seen["extra_terms"]
    assert isinstance(term, SADR) and term.gamma == gamma and seen["steps"] == steps
    assert set(seen) == {"name", "extra_terms", "steps", "drop_rate", "seed"}  # nothing else set


def test_given_steps_or_gamma_win_over_the_papers(planned):
    seen = planned("--model", "meta-llama/Meta-Llama-3-8B", "--editor", "rome", "--sadr", "--steps", "30")
    assert seen["extra_terms"][0].gamma == 4e-2 and seen["steps"] == 30
    seen = planned("--model", "meta-llama/Meta-Llama-3-8B", "--editor", "rome", "--sadr", "0.5")
    assert seen["extra_terms"][0].gamma == 0.5 and "steps" not in seen
