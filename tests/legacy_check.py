"""drift's adapter on a legacy TransformerLens 3.x ``HookedTransformer``.

Runs INSIDE ``.venv-legacy`` (built by ``bash scripts/setup-legacy.sh``), never in the main venv:
its name does not match pytest's ``test_*.py`` so the main run does not collect it, and
``tests/test_legacy.py`` runs it there as ``.venv-legacy/bin/python -m pytest -q tests/legacy_check.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformer_lens import HookedTransformer

from drift.model.adapter import Model
from drift.model.scoring import score_targets, target_logprobs
from drift.model.sites import HOOK_NAMES, WEIGHTS
from drift.model.tiny import tiny_legacy

PROMPTS = [
    "The Eiffel Tower is located in the city of",
    "The capital of Japan is",
    "Danielle Darrieux's mother tongue is",
    "Toko Yasuda produces the most amazing music on the",
]
TARGETS = ["Paris", "Tokyo", "French", "guitar"]

# TL 3.x warns that HookedTransformer is deprecated; the legacy kind is what this file tests.
pytestmark = pytest.mark.filterwarnings("ignore:HookedTransformer is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def model() -> Model:
    return tiny_legacy()


@pytest.fixture(scope="module")
def tokens(model) -> torch.Tensor:
    return torch.tensor([model.encode(PROMPTS[0])])


def _expected_shape(model: Model, site: str, batch: int, pos: int) -> tuple[int, ...]:
    c = model.cfg
    if site == "mlp_key":
        return (batch, pos, c.d_mlp)
    if site in ("pattern", "scores"):
        return (batch, c.n_heads, pos, pos)
    return (batch, pos, c.d_model)


# ---- kind and config -----------------------------------------------------------------------
def test_kind_is_legacy(model):
    assert isinstance(model.hooked, HookedTransformer)
    assert model.kind == "legacy"
    assert not any(p.requires_grad for p in model.hooked.parameters())
    assert not model.hooked.training


def test_cfg(model):
    c = model.cfg
    assert (c.n_layers, c.n_heads, c.n_key_value_heads, c.d_model, c.d_mlp) == (2, 4, 2, 32, 64)
    assert c.d_head == 8
    assert c.n_ctx == 128
    assert c.d_vocab == len(model.tokenizer)


# ---- hook names ------------------------------------------------------------------------------
def _sites_and_names(model):
    out = []
    for site, template in HOOK_NAMES.items():
        layers = range(model.cfg.n_layers) if "{layer}" in template else [None]
        out += [(site, layer, model.hook_name(site, layer)) for layer in layers]
    return out


def test_every_site_names_a_real_hook(model):
    known = set(model.hooked.hook_dict)
    missing = [name for _, _, name in _sites_and_names(model) if name not in known]
    assert not missing, f"hook names not on the legacy model: {missing}"


def test_every_site_fires_with_expected_shape(model, tokens):
    seen: dict[str, tuple[int, ...]] = {}

    def record(act, hook):
        seen[hook.name] = tuple(act.shape)

    names = _sites_and_names(model)
    batch, pos = tokens.shape
    with model.hooks([(name, record) for _, _, name in names]):
        model.forward(tokens)
    for site, layer, name in names:
        assert name in seen, f"site {site!r} layer {layer}: hook {name} never fired"
        assert seen[name] == _expected_shape(model, site, batch, pos), (site, layer, seen[name])

    # The block removes its hooks, also those passed to forward().
    seen.clear()
    model.forward(tokens)
    assert not seen
    model.forward(tokens, [(name, record) for _, _, name in names])
    assert len(seen) == len(names)
    seen.clear()
    model.forward(tokens)
    assert not seen


def test_hooks_that_return_a_value_patch_the_forward(model, tokens):
    clean = model.forward(tokens)
    name = model.hook_name("mlp_out", 1)
    patched = model.forward(tokens, [(name, lambda act, hook: torch.zeros_like(act))])
    assert not torch.allclose(clean, patched)
    assert torch.equal(model.forward(tokens), clean)


def test_hook_name_checks_layer_and_site(model):
    assert model.hook_name("mlp_key", 1) == "blocks.1.mlp.hook_post"
    assert model.hook_name("embed") == "hook_embed"
    with pytest.raises(ValueError):
        model.hook_name("resid_pre", model.cfg.n_layers)
    with pytest.raises(KeyError):
        model.hook_name("no_such_site", 0)


# ---- weights ---------------------------------------------------------------------------------
@pytest.mark.parametrize("which", sorted(WEIGHTS))
@pytest.mark.parametrize("layer", [0, 1])
def test_weight_views_write_through(model, tokens, which, layer):
    c = model.cfg
    w = model.weight(which, layer)
    expected = {"W_out": (c.d_mlp, c.d_model), "W_O": (c.n_heads, c.d_head, c.d_model)}[which]
    assert tuple(w.shape) == expected
    clean = model.forward(tokens)
    saved = w.detach().clone()
    try:
        with torch.no_grad():
            w.add_(torch.randn_like(w))
        # The edit reaches the model: the same weight read again shows it, and the output moves.
        assert torch.equal(model.weight(which, layer), w)
        assert not torch.equal(model.weight(which, layer), saved)
        assert not torch.allclose(model.forward(tokens), clean, atol=1e-4)
    finally:
        with torch.no_grad():
            w.copy_(saved)
    assert torch.equal(model.forward(tokens), clean)


def test_record_is_the_activation_cache_transformer_lens_gives(model, tokens):
    from transformer_lens import ActivationCache

    from drift.model.sites import Site

    cache = model.record(tokens, ["mlp_key@1", Site("pattern", 0)])
    assert isinstance(cache, ActivationCache)
    _, theirs = model.hooked.run_with_cache(tokens)
    for site in (Site("mlp_key", 1), Site("pattern", 0)):
        assert torch.equal(cache[site], theirs[model.hook_name(site)])


def test_weight_rejects_bad_names_and_layers(model):
    with pytest.raises(KeyError):
        model.weight("nope", 0)
    with pytest.raises(ValueError):
        model.weight("mlp_out", model.cfg.n_layers)


# ---- running from / to a layer ---------------------------------------------------------------
def test_start_at_layer_matches_full_forward(model, tokens):
    resid = {}

    def grab(act, hook):
        resid["pre1"] = act.detach().clone()

    full = model.forward(tokens, [(model.hook_name("resid_pre", 1), grab)])
    resumed = model.forward(resid["pre1"], start_at_layer=1)
    assert resumed.shape == full.shape
    torch.testing.assert_close(resumed, full, atol=1e-5, rtol=1e-5)

    stopped = model.forward(tokens, stop_at_layer=1)
    torch.testing.assert_close(stopped, resid["pre1"], atol=1e-5, rtol=1e-5)


# ---- scoring ---------------------------------------------------------------------------------
def test_score_targets_finite_logprobs(model):
    s = score_targets(model, PROMPTS, TARGETS)
    assert s.logprob.shape == (len(PROMPTS),)
    assert torch.isfinite(s.logprob).all()
    assert (s.logprob <= 0).all()
    assert s.n_tokens.tolist() == [len(model.encode_target(t)) for t in TARGETS]
    assert ((s.token_acc >= 0) & (s.token_acc <= 1)).all()
    assert s.top1.dtype == torch.bool


def test_batched_equals_one_at_a_time(model):
    batched = score_targets(model, PROMPTS, TARGETS)
    assert len({len(model.encode(p)) for p in PROMPTS}) > 1, "prompts should differ in length to test padding"
    single = [score_targets(model, [p], [t]) for p, t in zip(PROMPTS, TARGETS)]
    torch.testing.assert_close(batched.logprob, torch.cat([s.logprob for s in single]), atol=1e-5, rtol=0)
    assert batched.top1.tolist() == [bool(s.top1[0]) for s in single]
    torch.testing.assert_close(batched.token_acc, torch.cat([s.token_acc for s in single]))
    by_one = score_targets(model, PROMPTS, TARGETS, batch_size=1)
    torch.testing.assert_close(batched.logprob, by_one.logprob, atol=1e-5, rtol=0)


def test_logprob_matches_a_direct_forward(model):
    prompt, target = PROMPTS[0], TARGETS[0]
    p, t = model.encode(prompt), model.encode_target(target)
    logits = model.forward(torch.tensor([p + t]))[0].log_softmax(-1)
    direct = sum(float(logits[len(p) - 1 + j, tok]) for j, tok in enumerate(t))
    assert float(target_logprobs(model, [prompt], [target])[0]) == pytest.approx(direct, abs=1e-5)
    assert model.target_prob(prompt, target, "product") == pytest.approx(math.exp(direct), rel=1e-4)
    assert model.target_prob(prompt, target) == pytest.approx(math.exp(direct / len(t)), rel=1e-4)


# ---- tokenisation ----------------------------------------------------------------------------
def test_subject_positions_finds_the_subject(model):
    prompt, subject = PROMPTS[0], "Eiffel Tower"
    pos = model.subject_positions(prompt, subject)
    ids = model.encode(prompt)
    assert pos == list(range(pos[0], pos[-1] + 1))
    assert pos[0] >= 1  # BOS sits at 0
    assert subject in model.tokenizer.decode([ids[i] for i in pos])
    # Not more than the subject: the tokens either side are outside it.
    assert "Eiffel" not in model.tokenizer.decode([ids[pos[0] - 1]])
    assert "Tower" not in model.tokenizer.decode([ids[pos[-1] + 1]])


def test_subject_positions_raises_naming_absent_subject(model):
    with pytest.raises(ValueError, match="Colosseum"):
        model.subject_positions(PROMPTS[0], "Colosseum")
    with pytest.raises(ValueError, match="different case"):
        model.subject_positions(PROMPTS[0], "eiffel tower")
    with pytest.raises(ValueError):
        model.subject_positions(PROMPTS[0], "  ")


def test_encode_honours_prepend_bos(model):
    prompt = PROMPTS[0]
    plain = list(model.tokenizer(prompt, add_special_tokens=False).input_ids)
    assert model.prepend_bos is True  # the config's default_prepend_bos
    assert model.bos_id == model.tokenizer.bos_token_id
    assert model.encode(prompt) == [model.bos_id] + plain
    # drift's BOS convention agrees with TransformerLens's own.
    assert model.encode(prompt) == model.hooked.to_tokens(prompt, prepend_bos=True)[0].tolist()

    no_bos = Model(model.hooked, prepend_bos=False)
    assert no_bos.kind == "legacy"
    assert no_bos.encode(prompt) == plain
    assert no_bos.encode(prompt) == model.hooked.to_tokens(prompt, prepend_bos=False)[0].tolist()
    with_bos_pos = model.subject_positions(prompt, "Eiffel Tower")
    assert no_bos.subject_positions(prompt, "Eiffel Tower") == [i - 1 for i in with_bos_pos]


def test_encode_target_has_one_leading_space_and_no_bos(model):
    expected = list(model.tokenizer(" Paris", add_special_tokens=False).input_ids)
    assert model.encode_target("Paris") == expected
    assert model.encode_target("  Paris ") == expected
    assert model.bos_id not in model.encode_target("Paris")
    with pytest.raises(ValueError):
        model.encode_target("   ")


def test_pad_right_pads(model):
    seqs = [model.encode(p) for p in PROMPTS[:2]]
    toks, lengths = model.pad(seqs)
    assert lengths.tolist() == [len(s) for s in seqs]
    for i, s in enumerate(seqs):
        assert toks[i, : len(s)].tolist() == s
        assert (toks[i, len(s) :] == model.pad_id).all()
    with pytest.raises(ValueError):
        model.pad([[model.bos_id] * (model.cfg.n_ctx + 1)])
