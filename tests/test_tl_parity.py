"""drift's model is the TransformerLens model it wraps: common TransformerLens calls give the same
results on drift's ``Model`` and on a bare ``TransformerBridge`` booted from the same folder
without drift (its ``cfg.default_prepend_bos`` set to the model's convention, the one setting a
TransformerLens user makes for a model trained without BOS)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from transformer_lens import ActivationCache

P = "The Eiffel Tower is located in the city of"
P2 = "Danielle Darrieux's mother tongue is"
BATCH = [P, P2, "Rome"]


def _bare(folder: str, prepend_bos: bool):
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(folder, device="cpu")
    bridge.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    bridge.cfg.default_prepend_bos = prepend_bos
    return bridge


def _zero(act, hook):
    return torch.zeros_like(act)


def _added_hook_fires_until_reset(m) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    m.add_hook("blocks.0.hook_mlp_out", lambda act, hook: seen.append(act.clone()))
    m(P)
    m.reset_hooks()
    m(P)  # not recorded: the hook is gone
    return seen


def _hooks_block(m) -> torch.Tensor:
    with m.hooks(fwd_hooks=[("blocks.1.hook_attn_out", _zero)]):
        return m(P)


# (what is called, the call); each runs on drift's model and on the bare bridge
CALLS: list[tuple[str, Callable[[Any], Any]]] = [
    (
        "cfg sizes",
        lambda m: tuple(getattr(m.cfg, f) for f in ("n_layers", "n_heads", "d_model", "d_vocab", "n_ctx")),
    ),
    ("cfg.default_prepend_bos", lambda m: m.cfg.default_prepend_bos),
    ("to_tokens", lambda m: m.to_tokens(P)),
    ("to_tokens prepend_bos=True", lambda m: m.to_tokens(P, prepend_bos=True)),
    ("to_tokens prepend_bos=False", lambda m: m.to_tokens(P, prepend_bos=False)),
    ("to_tokens batch", lambda m: m.to_tokens(BATCH)),
    ("to_tokens padding_side=left", lambda m: m.to_tokens(BATCH, padding_side="left")),
    ("to_tokens move_to_device=False", lambda m: m.to_tokens(P, move_to_device=False).device),
    ("to_str_tokens", lambda m: m.to_str_tokens(P)),
    ("to_str_tokens prepend_bos=True", lambda m: m.to_str_tokens(P, prepend_bos=True)),
    ("to_str_tokens tokens", lambda m: m.to_str_tokens(m.to_tokens(P2)[0])),
    ("to_str_tokens list", lambda m: m.to_str_tokens([P, P2])),
    ("to_single_token", lambda m: m.to_single_token("The")),
    ("to_string", lambda m: m.to_string(m.to_tokens(P2)[0])),
    ("get_token_position", lambda m: m.get_token_position("The", P)),
    ("logits", lambda m: m(P)),
    ("logits of tokens", lambda m: m(m.to_tokens(P2))),
    ("return_type=loss", lambda m: m(P, return_type="loss")),
    ("loss_per_token", lambda m: m(P, return_type="loss", loss_per_token=True)),
    ("stop_at_layer", lambda m: m(P, stop_at_layer=1)),
    ("right-padded batch", lambda m: m(BATCH)),
    ("left-padded batch, last column", lambda m: m(BATCH, padding_side="left")[:, -1]),
    ("run_with_cache", lambda m: m.run_with_cache(P)),
    (
        "run_with_cache names_filter str",
        lambda m: m.run_with_cache(P, names_filter="blocks.1.hook_resid_post"),
    ),
    (
        "run_with_cache names_filter fn",
        lambda m: m.run_with_cache(P, names_filter=lambda n: n.endswith("pattern")),
    ),
    ("cache['pattern', 1]", lambda m: m.run_with_cache(P)[1]["pattern", 1]),
    ("cache['resid_post', -1]", lambda m: m.run_with_cache(P2)[1]["resid_post", -1]),
    ("run_with_hooks", lambda m: m.run_with_hooks(P, fwd_hooks=[("blocks.0.hook_mlp_out", _zero)])),
    ("hooks()", _hooks_block),
    ("add_hook, reset_hooks", _added_hook_fires_until_reset),
    (
        "generate text",
        lambda m: m.generate(P, max_new_tokens=6, do_sample=False, use_past_kv_cache=False, verbose=False),
    ),
    (
        "generate tokens",
        lambda m: m.generate(
            m.to_tokens(P2), max_new_tokens=4, do_sample=False, use_past_kv_cache=False, verbose=False
        ),
    ),
    ("W_U", lambda m: m.W_U),
    ("W_E", lambda m: m.W_E),
    ("blocks[1].attn.W_O", lambda m: m.blocks[1].attn.W_O),
    ("blocks[0].mlp.W_out", lambda m: m.blocks[0].mlp.W_out),
    ("parameters", lambda m: [tuple(p.shape) for p in m.parameters()]),
    ("state_dict keys", lambda m: sorted(m.state_dict())),
    ("hook_dict keys", lambda m: sorted(m.hook_dict)),
    (".to returns the model", lambda m: m.to("cpu") is m),
    (".eval returns the model", lambda m: m.eval() is m),
]


def assert_same(a: Any, b: Any, what: str) -> None:
    if isinstance(a, ActivationCache):
        assert isinstance(b, ActivationCache), what
        assert sorted(a.keys()) == sorted(b.keys()), what
        for k in a.keys():
            assert_same(a[k], b[k], f"{what}[{k}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), what
        assert a.shape == b.shape and a.dtype == b.dtype, what
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=lambda m: f"{what}: {m}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{what}[{i}]")
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


def _compare(model, bare) -> None:
    for what, call in CALLS:
        assert_same(call(model), call(bare), what)
    # and drift's model gives the same text with the key-value cache (the bare bridge does not)
    cached = model.generate(P, max_new_tokens=6, do_sample=False, use_past_kv_cache=True, verbose=False)
    uncached = bare.generate(P, max_new_tokens=6, do_sample=False, use_past_kv_cache=False, verbose=False)
    assert cached == uncached, "generate with the key-value cache differs from a run without it"


def test_transformer_lens_calls_agree_on_the_tiny_model(tiny):
    from drift.model.tiny import tiny_folder

    _compare(tiny, _bare(str(tiny_folder(seed=0)), tiny.prepend_bos))


def test_transformer_lens_calls_agree_on_the_default_model(real):
    from drift.model.loading import packaged_model_folder

    _compare(real, _bare(str(packaged_model_folder()), real.prepend_bos))


def test_wrapper_keeps_its_own_errors_clear(tiny):
    with pytest.raises(AttributeError, match="neither drift.Model nor the TransformerBridge"):
        tiny.no_such_attribute
    with pytest.raises(ValueError, match="padding_side must be"):
        tiny.to_tokens(BATCH, padding_side="middle")
    with pytest.raises(ValueError, match="exceeds the model's context"):
        tiny.to_tokens("Rome " * 200)
    assert tiny.to_tokens("Rome " * 200, truncate=True).shape == (1, tiny.cfg.n_ctx)
