"""Half precision: a model loads in bf16 or fp16, its key statistics are float64 sums cached per
dtype, ROME and MEMIT edit it through the normal API, and removing an edit is bit-exact.

The edits run on a tiny random Llama (4 layers, weights drawn with std 0.2 so that its answers are
not uniform). A random model's answer moves little under the presets' clamp and decay, which are
tuned for trained models, so these edits lift them (no KL, no decay, a wide clamp) and optimise the
bare rewrite prompt only (``n_prefixes=1``): what is tested is that the half-precision forward,
gradient and update do what the float32 ones do."""

from __future__ import annotations

import re
import warnings

import pytest
import torch

from drift.data import load_cases
from drift.editors import get_compute
from drift.editors.base import Edit, WeightDelta
from drift.editors.stats import key_second_moment
from drift.model.loading import as_dtype, load_model
from drift.model.tiny import TRAINING_TEXT, family_folder, tiny_family
from tests.conftest import weights_hash

HALF = (torch.bfloat16, torch.float16)
CASE = load_cases("builtin")[0]  # The Eiffel Tower ... Paris -> Rome
LIFTED = dict(steps=10, n_prefixes=1, kl_factor=0.0, weight_decay=0.0, clamp_norm=100.0, early_stop=0.0)
EDITORS = {"rome": dict(layer=1), "memit": dict(layers=(0, 1), mom2_weight=1.0)}
TEXTS = tuple(TRAINING_TEXT * 20)  # ≈ 2,000 tokens: more than 10 × d_mlp = 640


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@pytest.fixture(scope="module")
def llama() -> dict:
    """The tiny random Llama in each dtype, booted from one float32 folder."""
    return {dt: tiny_family("llama", n_layers=4, init_std=0.2, dtype=dt) for dt in (torch.float32, *HALF)}


@pytest.fixture(scope="module")
def fp32_after() -> dict:
    """P(o_edit | rewrite prompt) after each editor's edit of the float32 model, filled on demand."""
    return {}


# --- loading --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, *HALF], ids=_name)
def test_the_model_loads_and_runs_in_its_dtype(llama, dtype):
    model = llama[dtype]
    assert model.dtype == dtype and model.weight("mlp_out", 1).dtype == dtype
    logits = model.forward(torch.tensor([model.encode(CASE.prompt)]))  # [1, pos, d_vocab]
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    assert ("dtype=" in repr(model)) == (dtype != torch.float32)


def test_a_dtype_is_given_by_name_or_refused_naming_it():
    assert as_dtype("bf16") is torch.bfloat16 and as_dtype("fp16") is torch.float16
    assert as_dtype(None) is torch.float32 and as_dtype(torch.bfloat16) is torch.bfloat16
    for bad in ("bf32", "float64", torch.float64, 16):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            as_dtype(bad)
    with pytest.raises(ValueError, match="'half'"):  # refused before anything is loaded
        load_model(str(family_folder("llama", n_layers=4, init_std=0.2)), dtype="half")


def test_the_command_line_takes_dtype_and_keys_half_precision_runs_apart(tmp_path, capsys):
    from drift.__main__ import build_parser
    from drift.cli import jobs
    from drift.cli.spec import run_key, run_label

    argv = ["eval", "--data", "builtin", "--limit", "1", "--out", str(tmp_path / "r.json")]
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args([*argv, "--dtype", "bf32"])
    assert refused.value.code == 2 and "invalid choice: 'bf32'" in capsys.readouterr().err
    configs = {d: jobs.plan(build_parser().parse_args([*argv, *d])).config for d in ((), ("--dtype", "fp32"))}
    bf16 = jobs.plan(build_parser().parse_args([*argv, "--dtype", "bf16"])).config
    assert "dtype" not in configs[()] and run_key(configs[()]) == run_key(configs[("--dtype", "fp32")])
    assert bf16["dtype"] == "bf16" and run_key(bf16) != run_key(configs[()])
    assert run_label(bf16 | {"editor": "rome"}).endswith("bf16")
    for command in (["audit", "--out", "a.json"], ["prepare"]):
        assert build_parser().parse_args([*command, "--dtype", "fp16"]).dtype == "fp16"


# --- key statistics -------------------------------------------------------------------------------


def _float64_second_moment(model, layer: int, texts) -> torch.Tensor:
    """C ``[d_mlp, d_mlp]`` the plain way: every text alone, its keys (position 0 left out) cast
    to float64 before any product."""
    rows = []
    for text in texts:
        tokens = torch.tensor([model.encode(text)[: model.cfg.n_ctx]])
        rows.append(model.capture(tokens, "mlp_key", layer)[0, 1:].double())
    keys = torch.cat(rows)  # [n_tokens, d_mlp]
    return keys.T @ keys / len(keys)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=_name)
def test_key_statistics_are_float64_sums_of_the_models_own_keys(llama, dtype):
    """The keys of the model's own weights; on the CPU a bf16 model's are those of its weights run
    in float32 (upcast exactly, restored bit for bit after), not of a bf16 forward."""
    from drift.editors.stats import upcast_weights

    model = llama[dtype]
    h0 = weights_hash(model)
    C = key_second_moment(model, [1], TEXTS)[1]
    assert C.dtype == torch.float32 and C.device == model.device
    assert weights_hash(model) == h0 and model.dtype == dtype
    with upcast_weights(model):
        assert model.dtype == torch.float32
        want = _float64_second_moment(model, 1, TEXTS)
    assert weights_hash(model) == h0 and model.weight("mlp_out", 1).dtype == dtype
    assert float((C.double() - want).norm() / want.norm()) < 1e-6  # only float32 products and storage


def test_weights_upcast_for_the_statistics_come_back_bit_for_bit_after_an_error(llama):
    from drift.editors.stats import upcast_weights

    model = llama[torch.bfloat16]
    h0 = weights_hash(model)
    with pytest.raises(KeyboardInterrupt), upcast_weights(model):
        raise KeyboardInterrupt
    assert weights_hash(model) == h0 and model.dtype == torch.bfloat16


def test_key_statistics_are_cached_apart_for_each_dtype(llama):
    from drift.editors.stats import corpus_id
    from drift.model.loading import model_identity
    from drift.util.store import cache_root, load_tensors

    C = {dt: key_second_moment(llama[dt], [1], TEXTS)[1] for dt in (torch.float32, torch.bfloat16)}
    gap = float((C[torch.bfloat16] - C[torch.float32]).norm() / C[torch.float32].norm())
    assert 0 < gap < 0.05  # bf16 weights' keys differ from float32 ones, a little
    found = (cache_root() / "stats").rglob(f"mlp_key-L1-{corpus_id(TEXTS)}*")
    files = [f for f in found if "drift-tiny-llama-s0-l4-i0.2" in f.parent.name]
    w = model_identity(llama[torch.float32])
    assert w == model_identity(llama[torch.bfloat16])  # one folder's weights, loaded in two dtypes
    names = [f.name for f in files]
    assert f"mlp_key-L1-{corpus_id(TEXTS)}-t128-p1-{w}.safetensors" in names  # float32: no dtype
    (bf16,) = [f for f in files if f.name.endswith(f"-p1-{w}-bf16-f32.safetensors")]  # a CPU's forward
    assert load_tensors(bf16)[1]["dtype"] == "bfloat16" and load_tensors(bf16)[1]["forward"] == "float32"


# --- editing --------------------------------------------------------------------------------------


def _p_edit(model) -> float:
    return model.target_prob(CASE.prompt, CASE.o_edit)


@pytest.mark.parametrize("dtype", HALF, ids=_name)
@pytest.mark.parametrize("editor", sorted(EDITORS))
def test_half_precision_edits_like_float32_and_restores_bit_for_bit(llama, fp32_after, editor, dtype):
    compute = get_compute(editor, **LIFTED, **EDITORS[editor])
    if editor not in fp32_after:
        with compute(llama[torch.float32], CASE).applied(llama[torch.float32]):
            fp32_after[editor] = _p_edit(llama[torch.float32])
    model = llama[dtype]
    h0, before = weights_hash(model), _p_edit(model)
    edit = compute(model, CASE)
    assert weights_hash(model) == h0  # computing changes nothing
    assert all(torch.isfinite(d.delta).all() for d in edit.deltas)
    with edit.applied(model):
        after = _p_edit(model)
    assert weights_hash(model) == h0  # removed bit for bit
    assert after > 2 * before  # the rewrite prompt's answer is the new object's more (≈ 3×)
    assert abs(after - fp32_after[editor]) < 0.1 * fp32_after[editor]  # as float32's edit does


@pytest.mark.parametrize("dtype", HALF, ids=_name)
def test_a_half_precision_weight_gets_its_update_rounded_once(llama, dtype):
    model = llama[dtype]
    W = model.weight("mlp_out", 1)  # [d_mlp, d_model], in the model's dtype
    W0 = W.clone()
    g = torch.Generator().manual_seed(0)
    first, second = (
        Edit([WeightDelta("mlp_out", 1, 1e-3 * torch.randn(W.shape, generator=g))]) for _ in "ab"
    )
    with first.applied(model):
        once = (W0.float() + first.deltas[0].delta).to(dtype)  # the float32 sum, rounded once
        assert torch.equal(W, once)
        with second.applied(model):  # stacked edits come off latest first
            assert torch.equal(W, (once.float() + second.deltas[0].delta).to(dtype))
        assert torch.equal(W, once)
    assert torch.equal(W, W0)


@pytest.mark.parametrize("dtype", HALF, ids=_name)
def test_v0_and_keys_are_read_from_the_half_forward_and_kept_in_float32(llama, dtype):
    """v₀ and the MLP keys are the half-precision activations themselves, held in float32 (the
    decay, clamp and solves are float32 / float64 work)."""
    from drift.editors.objectives import default_terms
    from drift.editors.target import optimise_targets

    model = llama[dtype]
    res = optimise_targets(model, CASE, [("mlp_out", 1)], default_terms(0.0, 0.5), steps=2, key_layers=[1])
    ids = torch.tensor([model.encode(CASE.prompt)])
    at = model.subject_positions(CASE.prompt, CASE.subject)[-1]
    with torch.no_grad():
        out = model.capture(ids, "mlp_out", 1)[0, at]
        key = model.capture(ids, "mlp_key", 1)[0, at]
    assert out.dtype == key.dtype == dtype
    assert res.v0[("mlp_out", 1)].dtype == res.keys[1].dtype == torch.float32
    assert torch.equal(res.v0[("mlp_out", 1)], out.float())
    assert torch.equal(res.keys[1][0], key.float())  # the bare prompt's row comes first


def test_a_half_precision_model_on_a_cpu_without_its_instructions_is_warned_about_once(monkeypatch):
    """45.11: a bf16 edit ran about 17x as long per pass as float32 on a CPU without bf16
    instructions; loading one there says so, once, and a CPU that has them gets no warning."""
    import drift.model.loading as loading

    monkeypatch.setattr(loading, "_ANNOUNCED", set())
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    with pytest.warns(UserWarning, match=r"this CPU has no bf16 instructions: .*--dtype fp32"):
        loading.warn_slow_half("cpu", torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loading.warn_slow_half("cpu", torch.bfloat16)  # once
        loading.warn_slow_half("cpu", torch.float32)  # float32 is never slow
        loading.warn_slow_half("cuda", torch.float16)  # nor a GPU's half precision
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
        monkeypatch.setattr(loading, "_ANNOUNCED", set())
        loading.warn_slow_half("cpu", torch.bfloat16)  # this CPU has them
