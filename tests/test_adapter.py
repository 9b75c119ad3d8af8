"""The adapter on a TransformerLens 4 bridge (tiny random model); the legacy kind: test_legacy.py."""

from __future__ import annotations

import pytest
import torch

from drift.model.adapter import Arch, Model
from drift.model.sites import HOOK_NAMES
from tests.conftest import weights_hash

SHAPES = {
    "embed": "b p d_model",
    "resid_pre": "b p d_model",
    "resid_mid": "b p d_model",
    "resid_post": "b p d_model",
    "attn_out": "b p d_model",
    "mlp_out": "b p d_model",
    "mlp_key": "b p d_mlp",
    "pattern": "b n_heads p p",
    "scores": "b n_heads p p",
}


def test_config_read_from_model(tiny):
    c = tiny.cfg
    assert c is tiny.hooked.cfg  # TransformerLens' own config, model_name and device included
    assert (c.n_layers, c.n_heads, c.n_key_value_heads, c.d_model, c.d_mlp, c.d_head) == (2, 4, 2, 32, 64, 8)
    assert c.model_name and str(c.device) == "cpu"
    assert tiny.sizes == Arch(
        n_layers=2,
        n_heads=4,
        n_key_value_heads=2,
        d_model=32,
        d_mlp=64,
        d_head=8,
        n_ctx=128,
        d_vocab=c.d_vocab,
    )
    assert tiny.kind == "bridge"
    for p in tiny.hooked.parameters():
        assert not p.requires_grad


@pytest.mark.parametrize("site", sorted(HOOK_NAMES))
def test_every_site_fires_with_its_shape(tiny, site):
    tokens, _ = tiny.pad([tiny.encode("The Eiffel Tower is in Paris")])
    seen = {}

    def record(act, hook):
        seen["shape"] = tuple(act.shape)

    tiny.forward(tokens, [(tiny.hook_name(site, 1), record)])
    sizes = {"b": 1, "p": tokens.shape[1], **vars(tiny.sizes)}
    assert seen["shape"] == tuple(sizes[n] for n in SHAPES[site].split())


def test_hooks_are_removed_after_block_even_on_error(tiny):
    tokens, _ = tiny.pad([tiny.encode("Rome")])
    base = tiny.forward(tokens)

    def boom(act, hook):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiny.forward(tokens, [(tiny.hook_name("mlp_out", 0), boom)])
    assert torch.equal(tiny.forward(tokens), base)


@pytest.mark.parametrize("which", ["mlp_out", "attn_out"])
def test_weight_views_write_through(tiny, which):
    tokens, _ = tiny.pad([tiny.encode("The Colosseum is located in")])
    before, h0 = tiny.forward(tokens), weights_hash(tiny)
    w = tiny.weight(which, 1)
    saved = w.clone()
    with torch.no_grad():
        w.add_(0.5)
    assert not torch.allclose(tiny.forward(tokens), before)
    with torch.no_grad():
        w.copy_(saved)
    assert weights_hash(tiny) == h0
    assert torch.equal(tiny.forward(tokens), before)


def test_start_at_layer_matches_full_forward(tiny):
    tokens, _ = tiny.pad([tiny.encode("Apple was founded by Steve")])
    box = {}
    full = tiny.forward(
        tokens, [(tiny.hook_name("resid_pre", 1), lambda a, hook: box.setdefault("r", a.clone()))]
    )
    part = tiny.forward(box["r"], start_at_layer=1)
    torch.testing.assert_close(part, full, atol=1e-5, rtol=0)


def test_start_at_layer_computes_nothing_below_it(tiny):
    tokens, _ = tiny.pad([tiny.encode("Apple was founded by Steve")])
    resid = tiny.capture(tokens, "resid_pre", 1)
    fired = []
    hooks = [
        (tiny.hook_name(site, l), lambda a, hook, l=l: fired.append(l))
        for site in ("attn_out", "mlp_out")
        for l in (0, 1)
    ]
    tiny.forward(resid, hooks, start_at_layer=1)
    assert fired == [1, 1]
    tiny.forward(tokens, hooks)  # and the full model is whole again afterwards
    assert fired[2:] == [0, 0, 1, 1]


def test_logits_at_equals_full_logits(tiny):
    tokens, _ = tiny.pad([tiny.encode("Lionel Messi plays"), tiny.encode("Tokyo")])
    full = tiny.forward(tokens)
    rows, cols = torch.tensor([0, 0, 1]), torch.tensor([0, 2, 0])
    torch.testing.assert_close(tiny.logits_at(tokens, rows, cols), full[rows, cols], atol=1e-5, rtol=0)


def test_subject_positions_cover_the_subject(tiny):
    prompt = "The official language of Brazil is"
    pos = tiny.subject_positions(prompt, "Brazil")
    ids = tiny.encode(prompt)
    assert tiny.tokenizer.decode([ids[i] for i in pos]).strip() == "Brazil"


@pytest.mark.parametrize(
    "prompt",
    [
        "Eiffel Tower is in Paris",
        "I saw the Eiffel Tower in Paris",
        "Paris: Eiffel Tower.",
        "the tower (Eiffel Tower) in Paris",
    ],
)
def test_subject_found_at_the_start_and_mid_sentence(tiny, prompt):
    """The subject tokenises differently at the start, after a space or after punctuation; its
    positions come from character offsets, so they always cover exactly the subject."""
    pos = tiny.subject_positions(prompt, "Eiffel Tower")
    ids = tiny.encode(prompt)
    assert pos == list(range(pos[0], pos[-1] + 1))
    assert tiny.tokenizer.decode([ids[i] for i in pos]).strip() == "Eiffel Tower"


def test_subject_not_in_prompt_names_both(tiny):
    with pytest.raises(ValueError, match=r"'Japan' not found in prompt 'The capital of Italy is'"):
        tiny.subject_positions("The capital of Italy is", "Japan")
    with pytest.raises(ValueError, match="different case"):
        tiny.subject_positions("The capital of italy is", "Italy")


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_target_is_rejected(tiny, bad):
    with pytest.raises(ValueError, match="empty target"):
        tiny.encode_target(bad)


def test_target_gets_one_leading_space(tiny):
    assert tiny.encode_target("Paris") == tiny.encode_target(" Paris ")
    assert tiny.tokenizer.decode(tiny.encode_target("Paris")) == " Paris"


def test_bos_convention(tiny):
    with_bos = Model(tiny.hooked, prepend_bos=True)
    assert with_bos.encode("Rome")[0] == with_bos.bos_id
    assert with_bos.encode("Rome")[1:] == tiny.encode("Rome")
    assert with_bos.subject_positions("in Rome", "Rome") == [
        p + 1 for p in tiny.subject_positions("in Rome", "Rome")
    ]


def test_prompt_longer_than_context_is_rejected(tiny):
    with pytest.raises(ValueError, match="exceeds the model's context of 128"):
        tiny.pad([[1] * 129])


def test_unknown_site_and_layer(tiny):
    with pytest.raises(KeyError, match="unknown site 'mlp_in'"):
        tiny.hook_name("mlp_in", 0)
    with pytest.raises(ValueError, match=r"layer in \[0, 2\)"):
        tiny.hook_name("mlp_out", 2)


def test_wrapping_a_foreign_object_fails_clearly():
    with pytest.raises(TypeError, match="TransformerBridge or HookedTransformer"):
        Model(torch.nn.Linear(2, 2))


def test_sampling_with_the_cache_conditions_on_the_whole_prompt(tiny):
    """top_k=1 sampling (greedy, through the key-value cache) equals a greedy loop of full forward
    passes: every new token depends on the prompt, not only on the token before it."""
    prompt = torch.tensor([tiny.encode("The Eiffel Tower is located in the city")])
    sampled = tiny.sample(prompt, 8, top_k=1)
    tokens = prompt
    for _ in range(8):
        nxt = tiny.forward(tokens)[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, nxt], dim=1)
    assert sampled.tolist() == tokens.tolist()


def test_seeded_sampling_is_transformer_lens_own_draw_on_the_cpu(tiny):
    """Model.sample draws its tokens on the CPU (so that a GPU draws the same ones); on a CPU that is
    TransformerLens's own generate with the same seed, token for token."""
    prompt = torch.tensor([tiny.encode("The Eiffel Tower is located in")] * 3)
    sampled = tiny.sample(prompt, 12, top_k=5, seed=7)
    torch.manual_seed(7)
    own = tiny.hooked.generate(
        prompt, max_new_tokens=12, do_sample=True, top_k=5, stop_at_eos=False, verbose=False
    )
    assert sampled.tolist() == own.tolist()
    assert len({tuple(row) for row in sampled.tolist()}) > 1  # really sampled: the rows differ


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_seed_samples_the_same_tokens_on_a_gpu_as_on_the_cpu():
    import drift
    from drift.model.tiny import tiny_folder

    prompt = torch.tensor([[5, 6, 7]] * 4)
    on_cpu = drift.load_model(str(tiny_folder()), device="cpu").sample(prompt, 10, top_k=5, seed=3)
    on_gpu = drift.load_model(str(tiny_folder()), device="cuda").sample(prompt, 10, top_k=5, seed=3)
    assert on_gpu.cpu().tolist() == on_cpu.tolist()


def _greedy(model, prompt: str, n: int) -> list[int]:
    """Greedy decoding by full forward passes, one token at a time: no cache involved."""
    tokens = model.to_tokens(prompt)
    for _ in range(n):
        tokens = torch.cat([tokens, model(tokens)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens[0].tolist()


@pytest.mark.parametrize("use_cache", [True, False])
def test_generate_equals_a_step_by_step_greedy_decode(tiny, use_cache):
    """TransformerLens' ``generate``, on the wrapper and on the hooked model itself, gives the
    greedy continuation with and without the key-value cache (without drift's routing of the
    cache, the cached run drifts from the second new token on, on this model too)."""
    prompt = "The Eiffel Tower is located in the city of"
    want = _greedy(tiny, prompt, 8)
    opts = dict(
        max_new_tokens=8, do_sample=False, stop_at_eos=False, use_past_kv_cache=use_cache, verbose=False
    )
    assert tiny.generate(tiny.to_tokens(prompt), **opts)[0].tolist() == want
    assert tiny.hooked.generate(tiny.to_tokens(prompt), **opts)[0].tolist() == want
    assert tiny.generate(prompt, **opts) == tiny.to_string(want)


def test_generate_on_the_default_model_with_and_without_the_cache(real):
    prompt = "The Eiffel Tower is located in the city of"
    want = real.to_string(_greedy(real, prompt, 4))
    assert want == prompt + " Paris, France."
    for use_cache in (True, False):
        out = real.hooked.generate(
            prompt, max_new_tokens=4, do_sample=False, use_past_kv_cache=use_cache, verbose=False
        )
        assert out == want, f"use_past_kv_cache={use_cache}"


def test_wrapping_a_loaded_models_hooked_object_again_gives_the_same_model(tiny):
    """A loaded model's ``.hooked`` handed back to ``load_model`` keeps drift's BOS convention and
    name (the tiny tokenizer adds no BOS, while the bridge's cfg says it would)."""
    import drift

    again = drift.load_model(tiny.hooked)
    assert again.hooked is tiny.hooked
    assert (again.prepend_bos, again.name) == (tiny.prepend_bos, tiny.name)
    prompt = "The Eiffel Tower is located in the city of"
    assert again.encode(prompt) == tiny.encode(prompt)
    assert again.target_prob(prompt, "Paris") == tiny.target_prob(prompt, "Paris")


PROMPTS = [
    "The Eiffel Tower is located in the city of",
    "Danielle Darrieux's mother tongue is",
    "Apple was founded by",
]


def _tl_way_agrees(model):
    """TransformerLens' own tokenisation and forward on the hooked model, the wrapper's verbs and
    drift's target_prob give the same next-token probabilities."""
    for p in PROMPTS:
        tokens = model.hooked.to_tokens(p)
        assert tokens[0].tolist() == model.encode(p)
        logits, cache = model.hooked.run_with_cache(tokens)
        probs = logits[0, -1].softmax(-1)
        target = model.encode_target("Paris")[0]
        assert float(probs[target]) == pytest.approx(
            model.target_prob(p, model.to_string([target])), rel=1e-4
        )
        mine, my_cache = model.run_with_cache(p)
        torch.testing.assert_close(mine, logits)
        torch.testing.assert_close(model(p), logits)
        name = model.hook_name("pattern", 0)
        torch.testing.assert_close(my_cache[name], cache[name])
    assert model.to_string(model.to_tokens(PROMPTS[0])[0]).endswith(PROMPTS[0])


def test_transformer_lens_verbs_agree_with_drift_on_the_tiny_model(tiny):
    _tl_way_agrees(tiny)
    seen = []
    model_out = tiny.run_with_hooks(
        PROMPTS[0], fwd_hooks=[(tiny.hook_name("mlp_out", 0), lambda a, hook: seen.append(a.shape))]
    )
    assert len(seen) == 1 and model_out.shape[:2] == (1, len(tiny.encode(PROMPTS[0])))


def test_transformer_lens_verbs_agree_with_drift_on_the_default_model(real):
    """SmolLM2 was trained without BOS; TransformerLens would prepend one unless told otherwise."""
    assert real.hooked.cfg.default_prepend_bos is False
    _tl_way_agrees(real)


def test_record_is_a_transformer_lens_activation_cache_of_the_sites(tiny):
    from transformer_lens import ActivationCache

    from drift.model.sites import Site

    prompt = "The Eiffel Tower is located in"
    asked = [Site("mlp_key", 1), ("pattern", 0), "resid_pre@1", "embed"]
    cache = tiny.record(prompt, asked)
    assert isinstance(cache, ActivationCache)
    _, theirs = tiny.run_with_cache(prompt)
    for site in (Site("mlp_key", 1), Site("pattern", 0), Site("resid_pre", 1), Site("embed")):
        name = tiny.hook_name(site)
        assert torch.equal(cache[site], theirs[name])
        assert cache[name] is cache[site] is cache[str(site)]
    assert sorted(cache.keys()) == sorted(tiny.hook_name(s) for s in asked)
    assert cache["pattern", 0] is cache[Site("pattern", 0)]  # TransformerLens' own shorthand too


def test_record_stops_after_its_last_site_and_leaves_no_hooks(tiny):
    tokens, _ = tiny.pad([tiny.encode("Apple was founded by")])
    fired = []
    later = [(tiny.hook_name("mlp_out", 1), lambda a, hook: fired.append(1))]
    tiny.record(tokens, ["resid_pre@1"], later)
    assert fired == []  # block 1's MLP never ran
    assert not any(hp.fwd_hooks for hp in tiny.hooked.hook_dict.values())
    with pytest.raises(ValueError, match="at least one site"):
        tiny.record(tokens, [])


def test_record_copies_what_a_later_hook_changes_in_place(tiny):
    """A hook that writes into the residual stream after a recorded site leaves the recording as
    it was when recorded."""
    tokens, _ = tiny.pad([tiny.encode("Apple was founded by")])
    before = tiny.capture(tokens, "resid_post", 0).clone()

    def zero(act, hook):
        act.zero_()

    cache = tiny.record(tokens, ["resid_post@0", "mlp_out@1"], [(tiny.hook_name("resid_pre", 1), zero)])
    torch.testing.assert_close(cache["resid_post", 0], before, atol=0, rtol=0)


def test_weights_are_named_apart_from_sites(tiny):
    from drift.model.sites import Weight

    assert tiny.weight(Weight("W_out", 1)) is not None
    assert torch.equal(tiny.weight("W_out", 1), tiny.weight("mlp_out", 1))
    assert torch.equal(tiny.weight(Weight.parse("attn_out@0")), tiny.weight("W_O", 0))
    with pytest.raises(KeyError, match="unknown weight 'resid_pre'"):
        tiny.weight("resid_pre", 0)
