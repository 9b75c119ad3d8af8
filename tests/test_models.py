"""load_model: the offline default, the hub path offline, wrapping, the converted-model cache."""

from __future__ import annotations

import time

import pytest

import drift
from drift.model import loading as models
from drift.util.store import verify_dir


@pytest.mark.slow
def test_default_model_knows_where_the_eiffel_tower_is(real):
    assert real.cfg.n_layers == 30 and real.cfg.n_heads == 9 and real.cfg.n_key_value_heads == 3
    assert real.target_prob("The Eiffel Tower is located in the city of", "Paris") > 0.5
    for p in real.hooked.parameters():
        assert not p.requires_grad
    assert not real.hooked.training


def test_unknown_hub_model_fails_fast_naming_it(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    t = time.monotonic()
    with pytest.raises(drift.ModelLoadError, match="no-such-org/no-such-model"):
        drift.load_model("no-such-org/no-such-model")
    assert time.monotonic() - t < 60


def test_existing_model_is_wrapped_not_reloaded(tiny):
    again = drift.load_model(tiny.hooked)
    assert again.hooked is tiny.hooked
    assert drift.load_model(tiny) is tiny


def test_missing_package_is_named(monkeypatch):
    monkeypatch.setitem(models.PACKAGED_MODELS, "ghost", ("no-such-dist-xyz", ".gguf"))
    with pytest.raises(drift.ModelLoadError, match="no-such-dist-xyz"):
        models.packaged_model_folder("ghost")


def test_half_written_cache_is_rebuilt_never_loaded(tmp_path, monkeypatch):
    """A cache folder without a valid manifest (interrupted conversion) is converted again."""
    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    calls = []

    def fake_convert(gguf, out):
        calls.append(out)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"w" * 1000)

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    folder = models.packaged_model_folder()
    assert verify_dir(folder) and len(calls) == 1
    assert models.packaged_model_folder() == folder and len(calls) == 1  # reused
    (folder / "model.safetensors").write_bytes(b"w" * 10)  # truncated
    with pytest.warns(UserWarning, match="incomplete or corrupt"):
        models.packaged_model_folder()
    assert len(calls) == 2 and (folder / "model.safetensors").stat().st_size == 1000


def test_default_device_is_cuda_when_available_and_said_once(monkeypatch, caplog):
    import logging

    import torch

    from drift.model import loading as models

    caplog.set_level(logging.INFO, logger="drift.model.loading")
    monkeypatch.setattr(models, "_ANNOUNCED", set())
    for available, want in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda a=available: a)
        assert models.default_device() == want
        assert models.default_device() == want
    said = caplog.text
    assert said.count("models load on cpu") == 1 and said.count("models load on cuda") == 1


def test_a_local_model_loads_where_the_kernels_package_is_missing(monkeypatch):
    """transformers 5 loads with the Hub's kernels by default and refuses to load without the
    `kernels` package (a GPU machine's image): drift loads with the model's own modules."""
    import transformers.modeling_utils as mu

    from drift.model.tiny import tiny_folder

    monkeypatch.setattr(mu, "is_kernels_available", lambda: False)
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    model = drift.load_model(str(tiny_folder(seed=0)), device="cpu")
    assert model.cfg.n_layers == 2
    assert "USE_HUB_KERNELS" not in __import__("os").environ  # put back as it was
