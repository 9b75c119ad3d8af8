"""drift's model is never worse than the TransformerLens model it wraps.

The calls are generated from the class: every public name of TL 4's ``TransformerBridge`` (its
own, ``torch.nn.Module``'s, and the attributes a booted bridge sets) is read or called on drift's
``Model`` and on a bare bridge booted from the same folder without drift (its
``cfg.default_prepend_bos`` set to the model's convention, the one setting a TL user makes for a
model trained without BOS; its parameters frozen, as drift freezes its model's), and the two
results compared. A name whose call needs arguments gets
them from ``ARGS``; a call that changes the model runs on a fresh pair and is followed by a
forward pass; a name that cannot be called generically is in ``SKIP`` with its reason. A new name
in a later TransformerLens fails :func:`test_every_public_name_is_covered` until it is given
arguments or a reason. TL's helpers that take a model (``test_prompt``, every ``patching``
function, ``get_act_name`` on the cache) are compared the same way.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import types
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import torch

P = "The Eiffel Tower is located in the city of"
P2 = "Danielle Darrieux's mother tongue is"
BATCH = [P, P2, "Rome"]
HOOK = "blocks.0.hook_mlp_out"


def _zero(act, hook):
    return torch.zeros_like(act)


def _bridge_class():
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge


def _pair(folder: str, model=None):
    """drift's model (``model``, else booted) and a bare bridge, both from ``folder``."""
    import drift

    model = model if model is not None else drift.load_model(folder)
    bare = _bridge_class().boot_transformers(folder, device="cpu")
    bare.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    bare.cfg.default_prepend_bos = model.prepend_bos
    # frozen, as drift freezes its model's: with gradients on, TL 4.3's patching clones each
    # activation before patching it, and a clone returned from hook_resid_mid is not what the
    # block's MLP reads (the bridge keeps only in-place changes there)
    for p in bare.parameters():
        p.requires_grad_(False)
    return model, bare


def public_names(bare) -> list[str]:
    """The public names a user of a bridge can reach: the class's (its own and nn.Module's) and
    the attributes a booted bridge sets on itself."""
    names = {n for n in dir(type(bare)) if not n.startswith("_")}
    names |= {n for n in vars(bare) if not n.startswith("_")}
    names |= {n for n in getattr(bare, "_modules", {}) if not n.startswith("_")}
    return sorted(names | {"__call__"})


# ---- how each name is called ---------------------------------------------------------------------
# A call: f(model) -> what is compared. Names not listed are read (an attribute, a property) or
# called with no arguments (a method whose parameters all have defaults).
# the bare bridge's key-value cache misses the attention layers (see EXPECTED): compared uncached
UNCACHED = dict(do_sample=False, verbose=False, use_past_kv_cache=False)


def _generate(**kw):
    return lambda m: m.generate(P, max_new_tokens=4, do_sample=False, verbose=False, **kw)


def _added_hook_fires_until_reset(m) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    m.add_hook(HOOK, lambda act, hook: seen.append(act.clone()))
    m(P)
    m.reset_hooks()
    m(P)  # not recorded: the hook is gone
    return seen


def _perma_hook_survives_reset(m) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    m.add_perma_hook(HOOK, lambda act, hook: seen.append(act.clone()))
    m.reset_hooks()
    m(P)
    m.reset_hooks(including_permanent=True)
    m(P)
    return seen


def _cached(register: Callable) -> Callable:
    def call(m):
        cache: dict = {}
        register(m, cache)
        m(P)
        m.reset_hooks()
        return cache

    return call


def _hooks_block(m):
    with m.hooks(fwd_hooks=[("blocks.1.hook_attn_out", _zero)]):
        return m(P)


def _setting(method: str) -> Callable:
    """A ``set_use_...`` switch: the cache's names and values after it."""

    def call(m):
        getattr(m, method)(True)
        return m.run_with_cache(P)

    return call


ARGS: dict[str, list[tuple[str, Callable[[Any], Any]]]] = {
    "__call__": [
        ("text", lambda m: m(P)),
        ("tokens", lambda m: m(m.to_tokens(P2))),
        ("return_type=loss", lambda m: m(P, return_type="loss")),
        ("loss_per_token", lambda m: m(P, return_type="loss", loss_per_token=True)),
        ("stop_at_layer", lambda m: m(P, stop_at_layer=1)),
        ("right-padded batch", lambda m: m(BATCH)),
        ("left-padded batch, last column", lambda m: m(BATCH, padding_side="left")[:, -1]),
    ],
    "forward": [
        ("text", lambda m: m.forward(P)),
        ("return_type positional", lambda m: m.forward(P, "loss")),
        ("return_type=both", lambda m: m.forward(P, return_type="both")),
    ],
    "accumulated_bias": [("layer 1", lambda m: m.accumulated_bias(1, mlp_input=True))],
    "add_caching_hooks": [("cache", _cached(lambda m, c: c.update(m.add_caching_hooks(HOOK))))],
    "add_hook": [("fires until reset", _added_hook_fires_until_reset)],
    "add_module": [("named", lambda m: (m.add_module("extra", torch.nn.Identity()), m.extra)[1])],
    "add_perma_hook": [("survives reset_hooks", _perma_hook_survives_reset)],
    "all_composition_scores": [(mode, lambda m, mode=mode: m.all_composition_scores(mode)) for mode in "QKV"],
    "apply": [("counts modules", lambda m: (seen := [], m.apply(seen.append), len(seen))[1:])],
    "block_hooks": [("layer 0", lambda m: m.block_hooks(0))],
    "block_submodules": [("layer 0", lambda m: m.block_submodules(0))],
    "blocks_with": [("attn", lambda m: [i for i, _ in m.blocks_with("attn")])],
    "cache_all": [("cache", _cached(lambda m, c: m.cache_all(c)))],
    "cache_some": [("cache", _cached(lambda m, c: m.cache_some(c, lambda n: n.endswith("resid_post"))))],
    "check_hooks_to_add": [
        ("a hook", lambda m: m.check_hooks_to_add(m.hook_dict[HOOK], HOOK, _zero)),
    ],
    "diffusion_generate": [("text", lambda m: m.diffusion_generate(P, max_new_tokens=2))],
    "encoder_output": [("frames", lambda m: m.encoder_output(torch.zeros(1, 4, 8)))],
    "generate": [
        ("text", _generate(use_past_kv_cache=False)),
        ("text, key-value cache", _generate(use_past_kv_cache=True)),
        ("tokens", lambda m: m.generate(m.to_tokens(P2), max_new_tokens=3, **UNCACHED)),
        ("batch", lambda m: m.generate(BATCH[:2], max_new_tokens=3, **UNCACHED)),
    ],
    "generate_stream": [
        ("text", lambda m: list(m.generate_stream(P, max_new_tokens=4, **UNCACHED))),
    ],
    "get_buffer": [("none such", lambda m: m.get_buffer("no_such_buffer"))],
    "get_hook_point": [("mlp_out", lambda m: m.get_hook_point(HOOK))],
    "get_parameter": [("first", lambda m: m.get_parameter(next(iter(dict(m.named_parameters())))))],
    "get_submodule": [("blocks.0.mlp", lambda m: m.get_submodule("blocks.0.mlp"))],
    "get_token_position": [
        ("first", lambda m: m.get_token_position(m.to_single_token(" Paris"[:2]), P2 + " Pa")),
        ("text", lambda m: m.get_token_position(" Tower"[:3], P)),
    ],
    "hf_generate": [("text", lambda m: m.hf_generate(P, max_new_tokens=3, do_sample=False, verbose=False))],
    "hooks": [("zeroed attention out", _hooks_block)],
    "input_to_embed": [("text", lambda m: m.input_to_embed(P))],
    "load_state_dict": [("own weights", lambda m: (m.load_state_dict(m.state_dict()), m(P))[1])],
    "loss_fn": [("per token", lambda m: m.loss_fn(m(P), m.to_tokens(P), per_token=True))],
    "predict_next_sentence": [("two", lambda m: m.predict_next_sentence(P, P2))],
    "prepare_multimodal_inputs": [("text", lambda m: m.prepare_multimodal_inputs(P))],
    "register_backward_hook": [("no-op", lambda m: type(m.register_backward_hook(lambda *a: None)).__name__)],
    "register_buffer": [("extra", lambda m: (m.register_buffer("extra", torch.ones(2)), m.extra)[1])],
    "register_forward_hook": [
        ("doubles logits", lambda m: (m.register_forward_hook(lambda mod, a, out: out * 2), m(P))[1])
    ],
    "register_forward_pre_hook": [
        ("no-op", lambda m: (m.register_forward_pre_hook(lambda mod, a: None), m.to_tokens(P))[1])
    ],
    "register_full_backward_hook": [
        ("no-op", lambda m: type(m.register_full_backward_hook(lambda *a: None)).__name__)
    ],
    "register_full_backward_pre_hook": [
        ("no-op", lambda m: type(m.register_full_backward_pre_hook(lambda *a: None)).__name__)
    ],
    "register_load_state_dict_post_hook": [
        ("no-op", lambda m: type(m.register_load_state_dict_post_hook(lambda *a: None)).__name__)
    ],
    "register_load_state_dict_pre_hook": [
        ("no-op", lambda m: type(m.register_load_state_dict_pre_hook(lambda *a: None)).__name__)
    ],
    "register_module": [("extra", lambda m: (m.register_module("extra", torch.nn.Identity()), m.extra)[1])],
    "register_parameter": [
        ("extra", lambda m: (m.register_parameter("extra", torch.nn.Parameter(torch.ones(2))), m.extra)[1])
    ],
    "register_state_dict_post_hook": [
        ("no-op", lambda m: type(m.register_state_dict_post_hook(lambda *a: None)).__name__)
    ],
    "register_state_dict_pre_hook": [
        ("no-op", lambda m: type(m.register_state_dict_pre_hook(lambda *a: None)).__name__)
    ],
    "requires_grad_": [("on", lambda m: (m.requires_grad_(True), [p.requires_grad for p in m.parameters()]))],
    "run_with_cache": [
        ("text", lambda m: m.run_with_cache(P)),
        ("names_filter str", lambda m: m.run_with_cache(P, names_filter="blocks.1.hook_resid_post")),
        ("names_filter fn", lambda m: m.run_with_cache(P, names_filter=lambda n: n.endswith("pattern"))),
        ("cache['pattern', 1]", lambda m: m.run_with_cache(P)[1]["pattern", 1]),
        ("cache['resid_post', -1]", lambda m: m.run_with_cache(P2)[1]["resid_post", -1]),
        ("remove_batch_dim", lambda m: m.run_with_cache(P, remove_batch_dim=True)),
        ("batch", lambda m: m.run_with_cache(BATCH)),
        ("accumulated_resid", lambda m: m.run_with_cache(P)[1].accumulated_resid(apply_ln=True)),
        ("decompose_resid", lambda m: m.run_with_cache(P)[1].decompose_resid()),
        ("stack_head_results", lambda m: m.run_with_cache(P)[1].stack_head_results()),
        (
            "logit_attrs",
            lambda m: m.run_with_cache(P)[1].logit_attrs(m.run_with_cache(P)[1]["resid_post", -1], 5),
        ),
    ],
    "run_with_hooks": [
        ("zeroed mlp", lambda m: m.run_with_hooks(P, fwd_hooks=[(HOOK, _zero)])),
        ("return_type=loss", lambda m: m.run_with_hooks(P, fwd_hooks=[(HOOK, _zero)], return_type="loss")),
    ],
    "set_extra_state": [("none", lambda m: m.set_extra_state(None))],
    "set_submodule": [("same", lambda m: (m.set_submodule("blocks.0.ln1", m.blocks[0].ln1), m(P))[1])],
    "set_use_attn_in": [("on", _setting("set_use_attn_in"))],
    "set_use_attn_result": [("on", _setting("set_use_attn_result"))],
    "set_use_hook_mlp_in": [("on", _setting("set_use_hook_mlp_in"))],
    "set_use_split_qkv_input": [("on", _setting("set_use_split_qkv_input"))],
    "stack_params_for": [("attn W_Q", lambda m: m.stack_params_for("attn", "W_Q"))],
    "to": [("cpu", lambda m: m.to("cpu")), ("float32", lambda m: m.to(torch.float32))],
    "to_empty": [("cpu", lambda m: [tuple(p.shape) for p in m.to_empty(device="cpu").parameters()])],
    "to_sentence_pair_tokens": [("two", lambda m: m.to_sentence_pair_tokens(P, P2))],
    "to_single_str_token": [("7", lambda m: m.to_single_str_token(7))],
    "to_single_token": [("The", lambda m: m.to_single_token("The"))],
    "to_str_tokens": [
        ("text", lambda m: m.to_str_tokens(P)),
        ("prepend_bos=True", lambda m: m.to_str_tokens(P, prepend_bos=True)),
        ("tokens", lambda m: m.to_str_tokens(m.to_tokens(P2)[0])),
        ("2D tokens", lambda m: m.to_str_tokens(m.to_tokens(P2))),
        ("list", lambda m: m.to_str_tokens([P, P2])),
        ("int list", lambda m: m.to_str_tokens([5, 6, 7])),
    ],
    "to_string": [
        ("0-d tensor", lambda m: m.to_string(torch.tensor(7))),
        ("int", lambda m: m.to_string(7)),
        ("list", lambda m: m.to_string([5, 6, 7])),
        ("[pos]", lambda m: m.to_string(m.to_tokens(P2)[0])),
        ("[batch, pos]", lambda m: m.to_string(m.to_tokens(BATCH))),
    ],
    "to_tokens": [
        ("text", lambda m: m.to_tokens(P)),
        ("prepend_bos=True", lambda m: m.to_tokens(P, prepend_bos=True)),
        ("prepend_bos=False", lambda m: m.to_tokens(P, prepend_bos=False)),
        ("batch", lambda m: m.to_tokens(BATCH)),
        ("padding_side=left", lambda m: m.to_tokens(BATCH, padding_side="left")),
        ("move_to_device=False", lambda m: m.to_tokens(P, move_to_device=False).device),
    ],
    "tokens_to_residual_directions": [
        ("int", lambda m: m.tokens_to_residual_directions(7)),
        ("str", lambda m: m.tokens_to_residual_directions(m.to_single_str_token(7))),
        ("tokens", lambda m: m.tokens_to_residual_directions(m.to_tokens(P)[0, :3])),
    ],
    "type": [("float32", lambda m: m.type(torch.float32))],
}

# Calls that change the model: each runs on a fresh pair, then a forward pass is compared too.
MUTATES = {
    "add_module", "bfloat16", "clear_hook_registry", "close", "cpu", "cuda", "double",
    "enable_compatibility_mode", "float", "half", "init_weights", "ipu", "load_state_dict", "mps",
    "mtia", "process_weights",
    "register_buffer", "register_forward_hook", "register_forward_pre_hook", "register_module",
    "register_parameter", "requires_grad_", "set_submodule", "set_use_attn_in", "set_use_attn_result",
    "set_use_hook_mlp_in", "set_use_split_qkv_input", "share_memory", "to_empty", "train", "type",
    "xpu", "zero_grad",
}  # fmt: skip

# Names that cannot be called generically, each with its reason.
SKIP = {
    "boot_native": "a constructor of a new bridge from a config object, not a call on a model",
    "boot_tl_legacy": "a constructor of a new bridge by a hub name (network)",
    "boot_transformers": "a constructor of a new bridge by a hub name or folder (the fixture calls it)",
    "check_model_support": "a static check of a hub model id (network)",
    "compile": "torch.compile of the whole module: minutes, and it wraps forward in place for good",
    "dump_patches": "a torch class flag, not a model attribute",
    "call_super_init": "a torch class flag, not a model attribute",
    "T_destination": "a torch type variable",
    "smart_apply": "set on the instance by transformers while it loads (its weight init), not TL's",
}


def _call_plan(bare) -> dict[str, list[tuple[str, Callable[[Any], Any]]]]:
    """Each public name's calls: ``ARGS``', else a read or a call with no arguments."""
    plan = {}
    for name in public_names(bare):
        if name in SKIP:
            continue
        if name in ARGS:
            plan[name] = ARGS[name]
            continue
        attr = inspect.getattr_static(type(bare), name, None)
        value = getattr(bare, name, None) if attr is None else attr
        if isinstance(value, (property, types.MemberDescriptorType)) or not callable(value):
            plan[name] = [("read", lambda m, name=name: getattr(m, name))]
            continue
        func = getattr(bare, name)
        try:
            params = inspect.signature(func).parameters.values()
        except (TypeError, ValueError):
            params = ()
        required = [
            p for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if required:
            plan[name] = []  # needs ARGS or a SKIP reason
        elif isinstance(value, (torch.nn.Module,)):  # a submodule: read, not called
            plan[name] = [("read", lambda m, name=name: getattr(m, name))]
        else:
            plan[name] = [("()", lambda m, name=name: getattr(m, name)())]
    return plan


# ---- comparing ---------------------------------------------------------------------------------------
def observe(x: Any, model: Any, depth: int = 0) -> Any:
    """What of a call's result is compared: tensors as they are, containers item by item, the
    model itself (what a method returning ``self`` gives back) as a marker, a module by its
    weights, anything else by its type."""
    from transformer_lens import ActivationCache, FactoredMatrix
    from transformer_lens.hook_points import HookPoint

    if depth > 4:
        return type(x).__name__
    if x is model or (depth > 0 and x is getattr(model, "hooked", model)):
        return "<the model itself>"  # (what drift's model yields of its modules is the bridge)
    if isinstance(x, (str, int, float, bool, type(None), torch.device, torch.dtype)):
        return x
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, FactoredMatrix):
        return ("FactoredMatrix", x.AB.detach())
    if isinstance(x, ActivationCache):
        return {k: x[k].detach() for k in x.keys()}
    if isinstance(x, HookPoint):
        return ("HookPoint", x.name)
    if isinstance(x, torch.nn.Module):
        return (type(x).__name__, {k: v.detach() for k, v in x.state_dict().items()})
    if isinstance(x, dict):
        return {k: observe(v, model, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(observe(v, model, depth + 1) for v in x)
    if isinstance(x, Iterator):
        return [observe(v, model, depth + 1) for v in x]
    if hasattr(x, "to_dict") and callable(x.to_dict):  # a config
        return observe(x.to_dict(), model, depth + 1)
    if inspect.isroutine(x):
        return ("routine", getattr(x, "__name__", "?"))
    if hasattr(x, "__dict__") and type(x).__module__.startswith("transformer_lens"):
        return (type(x).__name__, observe(vars(x), model, depth + 1))
    return type(x).__name__


def outcome(call: Callable, model: Any) -> Any:
    """``observe`` of the call's result, or the type of the exception it raised."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return observe(call(model), model)
    except Exception as e:  # the same exception type on both sides is parity too
        return ("raised", type(e).__name__)


def _raised(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) and x[0] == "raised"


def assert_same(a: Any, b: Any, what: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), f"{what}: {type(b).__name__}"
        assert a.shape == b.shape and a.dtype == b.dtype, (
            f"{what}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        )
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, equal_nan=True, msg=lambda m: f"{what}: {m}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(map(str, a)) == sorted(map(str, b)), f"{what}: keys differ"
        for k in a:
            assert_same(a[k], b[k], f"{what}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{what}: {a!r:.200} != {b!r:.200}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{what}[{i}]")
    else:
        assert a == b, f"{what}: {a!r:.200} != {b!r:.200}"


# What differs between drift's model and a bare bridge, by design (each asserted elsewhere):
# drift's model is what a TL user of a bridge would see, plus these.
EXPECTED = {
    # drift routes the key-value cache to every attention layer (drift.model._bridge): with it, cached
    # generation gives what uncached generation gives; the bare bridge's cached text differs
    ("generate", "text, key-value cache"),
    ("hf_generate", "text"),
    # drift's own config setting: a plain forward builds no Hugging Face cache (drift.model._bridge)
    ("original_model", "read"),
}


def _copies(model, bare):
    """Fresh copies of a pair (a quarter of the time booting them again takes)."""
    from drift.model.adapter import Model

    return Model(copy.deepcopy(model.hooked)), copy.deepcopy(bare)


def _check_pair(pristine: tuple, only: set | None = None) -> list[str]:
    """Every call of the plan on drift's model and a bare bridge (``pristine``, booted from one
    folder; a call that changes the model runs on fresh copies of the two, the others on one more
    copy); ``only``: just these names or (name, label)s, none of which changes the model, on
    ``pristine`` itself."""
    model, bare = _copies(*pristine) if only is None else pristine
    plan = _call_plan(bare)
    failures = []
    for name, calls in plan.items():
        for label, call in calls:
            if (name, label) in EXPECTED:
                continue
            if only is not None and name not in only and (name, label) not in only:
                continue
            if name in MUTATES:
                m, b = _copies(*pristine)
                torch.manual_seed(0)
                got = outcome(call, m)
                after_m = outcome(lambda x: x(P), m)
                torch.manual_seed(0)
                want = outcome(call, b)
                after_b = outcome(lambda x: x(P), b)
                if not (_raised(got) and _raised(want) and got == want):
                    got, want = (got, after_m), (want, after_b)  # a call that failed leaves no state
            else:
                torch.manual_seed(0)
                got = outcome(call, model)
                torch.manual_seed(0)
                want = outcome(call, bare)
            try:
                assert_same(got, want, f"{name} ({label})")
            except AssertionError as e:
                failures.append(str(e).splitlines()[0])
    return failures


def test_every_public_name_is_covered():
    from drift.model.tiny import tiny_folder

    _, bare = _pair(str(tiny_folder(seed=0)))
    plan = _call_plan(bare)
    uncovered = sorted(n for n, calls in plan.items() if not calls)
    assert uncovered == [], f"give these bridge names arguments in ARGS or a reason in SKIP: {uncovered}"
    stale = sorted((set(ARGS) | set(SKIP) | set(MUTATES)) - set(public_names(bare)))
    assert stale == [], f"no longer names of the bridge: {stale}"
    assert len(SKIP) <= 10


def test_every_bridge_call_agrees_on_the_tiny_model():
    from drift.model.tiny import tiny_folder

    failures = _check_pair(_pair(str(tiny_folder(seed=0))))
    assert failures == [], "\n".join(failures)


# on the default model, drift's own tokenisation and running, a call or two of each (the whole plan
# would hold copies of the model and its whole-model weight products; each call is a forward)
RUNS = {"to_tokens", "to_str_tokens", "to_string", "get_token_position", ("__call__", "text")}
RUNS |= {("__call__", "left-padded batch, last column"), ("forward", "return_type positional")}
RUNS |= {("run_with_cache", "text"), ("run_with_hooks", "zeroed mlp"), ("generate", "tokens")}


@pytest.mark.slow
def test_the_calls_that_tokenise_and_run_agree_on_the_default_model(real):
    from transformer_lens.utilities import test_prompt

    from drift.model.loading import packaged_model_folder

    _, bare = _pair(str(packaged_model_folder()), model=real)
    assert _check_pair((real, bare), RUNS) == []
    assert _printed(test_prompt, P, " Paris", real, top_k=3) == _printed(
        test_prompt, P, " Paris", bare, top_k=3
    )


def test_expected_differences_are_improvements(tiny):
    """Where drift differs on purpose, it gives what the slower path gives: cached generation
    equals uncached generation."""
    cached = tiny.generate(P, max_new_tokens=6, do_sample=False, use_past_kv_cache=True, verbose=False)
    uncached = tiny.generate(P, max_new_tokens=6, do_sample=False, use_past_kv_cache=False, verbose=False)
    assert cached == uncached


# ---- TL's helpers that take a model -----------------------------------------------------------------
def _printed(fn: Callable, *args, **kwargs) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fn(*args, **kwargs)
    return out.getvalue()


def test_test_prompt_prints_what_it_prints_for_the_bare_bridge():
    from transformer_lens.utilities import test_prompt

    from drift.model.tiny import tiny_folder

    model, bare = _pair(str(tiny_folder(seed=0)))
    for answer in (" Paris", [" Paris", " Rome"]):
        got = _printed(test_prompt, P, answer, model, top_k=3)
        assert "Rank" in got and "Top 0th token" in got
        assert got == _printed(test_prompt, P, answer, bare, top_k=3)


def test_get_act_name_reads_the_same_activations():
    from transformer_lens.utilities import get_act_name

    from drift.model.tiny import tiny_folder

    model, bare = _pair(str(tiny_folder(seed=0)))
    _, mine = model.run_with_cache(P)
    _, theirs = bare.run_with_cache(P)
    for kind in (
        "resid_pre",
        "resid_mid",
        "resid_post",
        "attn_out",
        "mlp_out",
        "pattern",
        "q",
        "k",
        "v",
        "z",
    ):
        for layer in range(model.cfg.n_layers):
            name = get_act_name(kind, layer)
            torch.testing.assert_close(mine[name], theirs[name])
            torch.testing.assert_close(mine[kind, layer], theirs[name])


def _patching_functions() -> list[str]:
    import transformer_lens.patching as patching

    return sorted(n for n in dir(patching) if n.startswith("get_act_patch"))


@pytest.fixture(scope="module")
def across_an_edit():
    """drift's model and a bare bridge, an edit of the model, the unedited model's cache of a
    short prompt and a metric (the logit of the edit's target)."""
    import drift
    from drift.model.tiny import tiny_folder

    model, bare = _pair(str(tiny_folder(seed=0)))
    prompt = "Rome is in"
    edit = drift.edit(model, prompt, subject="Rome", target="Paris", target_true="Italy", layer=0, steps=2)
    tokens = model.to_tokens(prompt)
    paris = model.to_tokens(" Paris", prepend_bos=False)[0, 0]
    _, clean = model.run_with_cache(tokens)
    return model, bare, edit, tokens, clean, lambda logits: logits[0, -1, paris]


@pytest.mark.parametrize("name", _patching_functions())
def test_tl_patching_agrees_across_an_edit(name, across_an_edit):
    """Each of TL's ``patching`` functions, the unedited model's activations patched into the
    edited model, on drift's model (carrying the edit) and on a bare bridge given the edited
    weights."""
    import transformer_lens.patching as patching

    model, bare, edit, tokens, clean, metric = across_an_edit
    fn = getattr(patching, name)
    args, kwargs = (tokens, clean), {}
    if "direct_path" in name:  # these also take the corrupted (here: edited) run's cache
        with edit.applied(model):
            _, edited = model.run_with_cache(tokens)
        args, kwargs = (tokens, clean, edited), {"verbose": False, "component": "q"}
        if name == "get_act_patch_direct_path":
            kwargs |= {"src_layer": 0, "src_head": 1}
    with edit.applied(model):
        bare.load_state_dict(model.hooked.state_dict())
        got = outcome(lambda m: fn(m, *args, metric, **kwargs), model)
    want = outcome(lambda m: fn(m, *args, metric, **kwargs), bare)
    assert not _raised(got), got
    assert_same(got, want, name)
    assert isinstance(got, torch.Tensor) and not torch.equal(got, torch.zeros_like(got))
