"""Pins that fail on a plausible wrong reading of the reference code.

Each editor is run end to end on the tiny random model and compared with the reference
algorithm written out here in plain torch, from the reference code's ``compute_v`` /
``compute_z`` / ``compute_zs`` loops and ``rome_main`` / ``memit_main`` / ``pmet_main`` layer
loops: every prompt run from its tokens (no prefix cache, no batching of cases), the losses,
the schedule, the clamp, the key statistics and the solves computed by the formulas themselves.
drift's adapter is used only to tokenise, to run the model with hooks and to read its weights;
no editor helper of drift computes an expected value. The settings are chosen so that every
branch a wrong reading would change is taken (the clamp binds, PMET's argmax weight and KL stop
fire, SADR restrains some heads), and each test checks that it was.

Where the reference re-tokenises ``prompt + decode(target[:-1])`` as one string, the sequences
here are the prompt's tokens followed by the target's (drift's documented choice, ledger row
"rewriting sequences"); on the tiny tokenizer the two agree for these prompts.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from drift.data import parse_case
from drift.editors.memit import MEMITHParams, compute_memit
from drift.editors.objectives import EditBatch
from drift.editors.pmet import PMETHParams, compute_pmet
from drift.editors.rome import ROMEHParams, compute_rome
from drift.editors.sadr import SADR
from tests.conftest import ConstantTerm
from tests.test_fidelity import _reference_sadr, _step
from tests.test_rome import CORPUS, EIFFEL

# drift's fixed prefixes for n_prefixes=3, written out (the test must not read drift's list)
PREFIXES = ["", "Here is a short fact. ", "I read this in a book. "]

# The subject ends the prompt: on the tiny random model only a vector at the predicting position
# moves the next token enough for PMET's schedule to fire ("in" is then the argmax after one step).
TOWER = parse_case(
    {
        "case_id": "tower",
        "requested_rewrite": {
            "prompt": "Paris is the city of the Eiffel Tower",
            "subject": "Eiffel Tower",
            "target_new": "in",
            "target_true": "Paris",
        },
    }
)


def _texts(n: int = 60, words: int = 14, seed: int = 0) -> tuple[str, ...]:
    """Key-statistics texts with enough distinct keys for a full-rank C on the tiny model (d_mlp
    64): the tiny tokenizer's training sentences' words in seeded random orders."""
    import random

    from drift.model.tiny import TRAINING_TEXT

    vocab = " ".join(TRAINING_TEXT).split()
    rng = random.Random(seed)
    return tuple(" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n))


TEXTS = _texts()


@pytest.fixture(scope="module")
def tiny4():
    """A 4-layer tiny model: vectors at layer 1 reach the answer through two more layers."""
    from drift.model.tiny import tiny_bridge

    return tiny_bridge(seed=0, n_layers=4)


# ---- the reference, written out -----------------------------------------------------------------


def reference_C(model, layer: int, texts=TEXTS) -> torch.Tensor:
    """layer_stats: E[k kᵀ] (uncentred) of the MLP keys over every text's tokens (cut to 512),
    position 0 left out (drift's documented choice; ``stats_skip_first``)."""
    total = torch.zeros(model.cfg.d_mlp, model.cfg.d_mlp, dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for text in texts:
            ids = model.encode(text)[:512]
            keys = model.capture(torch.tensor([ids]), "mlp_key", layer)[0, 1:].double()
            total += keys.T @ keys
            count += keys.shape[0]
    return total / count


def reference_optimise(
    model,
    case,
    sites,
    prefixes,
    *,
    steps,
    lr,
    kl_factor,
    weight_decay,
    clamp,
    early_stop=5e-2,
    pmet=False,
    sadr_weight=None,
    key_layer=None,
    awd=False,
):
    """compute_v / compute_z / compute_zs: one right-padded batch of every context-prefixed
    rewriting sequence and "{subject} is a", each site's vector added at every row's subject's
    last token, v₀ recorded at the bare prompt on the first pass; loss = NLL (mean over prompts of
    the target's mean token NLL, × 0.1 under PMET's schedule after an argmax pass) + ω·KL(init ‖ cur
    as kl_div(init, cur, log_target, batchmean)) at the KL prompt's subject's last token + λ Σ
    ‖δ‖/‖v₀‖² (+ SADR's hinge KL × weight × 1e-4); stop below 5e-2, PMET's KL stop, the last pass
    only measures; Adam, then each δ clamped to clamp·‖v₀‖. Returns a trace."""
    target = model.encode_target(case.o_edit)
    seqs, lookup, predict = [], [], []
    for prefix in prefixes:
        prompt = prefix + case.prompt
        ids = model.encode(prompt)
        lookup.append(model.subject_positions(prompt, case.subject)[-1])
        predict.append(len(ids) - 1)
        seqs.append(ids + target[:-1])
    kl_prompt = f"{case.subject} is a"
    seqs.append(model.encode(kl_prompt))
    lookup.append(model.subject_positions(kl_prompt, case.subject)[-1])
    n = len(prefixes)
    width = max(len(s) for s in seqs)
    tokens = torch.tensor([s + [model.pad_id] * (width - len(s)) for s in seqs])
    rows = torch.arange(len(seqs))
    deltas = {s: torch.zeros(model.cfg.d_model, requires_grad=True) for s in sites}
    opt = torch.optim.Adam(list(deltas.values()), lr=lr)
    init, kl_init, vanilla_attn, keys = {}, None, None, None
    trace = dict(losses=[], clamped=0, scaled=0, kl_stop=False, restrained=0)
    nll_factor = 1.0
    for it in range(steps):
        box = {}

        def add(site):
            def fn(act, hook):
                if site not in init:
                    init[site] = act[0, lookup[0]].detach().clone()
                out = act.clone()
                out[rows, torch.tensor(lookup)] += deltas[site]
                return out

            return fn

        hooks = [(model.hook_name(name, layer), add((name, layer))) for name, layer in sites]
        if key_layer is not None:
            hooks.append(
                (model.hook_name("mlp_key", key_layer), lambda a, hook: box.__setitem__("keys", a.detach()))
            )
        if awd:  # ROME-AWD: no gradient through the attention weights from the first site's layer on
            first = min(layer for _, layer in sites)
            hooks += [
                (model.hook_name("pattern", l), lambda a, hook: a.detach())
                for l in range(first, model.cfg.n_layers)
            ]
        if sadr_weight is not None:
            for l in range(model.cfg.n_layers):
                hooks.append((model.hook_name("pattern", l), lambda a, hook, l=l: box.__setitem__(l, a)))
        logp = model.forward(tokens, hooks).float().log_softmax(-1)
        if keys is None and key_layer is not None:
            keys = box["keys"][torch.arange(n), torch.tensor(lookup[:n])].clone()
        tok_lp = torch.stack([logp[b, predict[b] + j, t] for b in range(n) for j, t in enumerate(target)])
        nll_each = -tok_lp.view(n, len(target)).sum(1) / len(target)
        nll = nll_factor * nll_each.mean()
        kl_lp = logp[n, lookup[n]][None]
        if kl_init is None:
            kl_init = kl_lp.detach().clone()
        kl = kl_factor * F.kl_div(kl_init, kl_lp, log_target=True, reduction="batchmean")
        wd = weight_decay * sum(deltas[s].norm() / init[s].norm() ** 2 for s in sites)
        loss = nll + kl + wd
        if sadr_weight is not None:
            attn = [box[l] for l in range(model.cfg.n_layers)]
            if vanilla_attn is None:
                vanilla_attn = [a.detach() for a in attn]
                sadr = torch.zeros(())
            else:
                sadr = 0.0
                for p, q in zip(vanilla_attn, attn):
                    p, q = p[:n] + 1e-8, q[:n] + 1e-8
                    max_p = torch.stack([p[b, :, predict[b], lookup[b]].max() for b in range(n)])
                    cur_q = torch.stack([q[b, :, predict[b], lookup[b]] for b in range(n)])
                    mask = cur_q > max_p[:, None]
                    trace["restrained"] += int(mask.sum())
                    res = (p * (p / q).log()) * mask[:, :, None, None]
                    sadr = sadr + sum(res[b, :, predict[b], :].sum() for b in range(n)) / n
                sadr = sadr * sadr_weight * 1e-4
            loss = loss + sadr
        trace["losses"].append(dict(nll=float(nll), kl=float(kl), weight_decay=float(wd), total=float(loss)))
        if sadr_weight is not None:
            trace["losses"][-1]["sadr"] = float(sadr)
        if loss < early_stop:
            break
        argmax = all(
            int(logp[b, predict[b] + j].argmax()) == t for b in range(n) for j, t in enumerate(target)
        )
        trace["argmax"] = trace.get("argmax", 0) + argmax
        if pmet:
            if argmax:
                nll_factor = 0.1
                if kl <= 0.01:
                    trace["kl_stop"] = True
                    break
            else:
                nll_factor = 1.0
        if it == steps - 1:
            break
        trace["scaled"] += nll_factor != 1.0
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for s in sites:
                max_norm = clamp * init[s].norm()
                if deltas[s].norm() > max_norm:
                    deltas[s][...] = deltas[s] * max_norm / deltas[s].norm()
                    trace["clamped"] += 1
    trace.update(deltas={s: d.detach() for s, d in deltas.items()}, init=init, keys=keys, tokens=tokens)
    trace.update(lookup=lookup[:n], n=n)
    return trace


def reference_rome(model, case, layer, prefixes, C, **opt):
    """compute_u, compute_v, rome_main: u = C⁻¹k̄/‖C⁻¹k̄‖ (k̄ the mean key over every context), right =
    (v* − the bare prompt's MLP output)/(k_bare · u); ΔW in TransformerLens orientation."""
    tr = reference_optimise(model, case, [("mlp_out", layer)], prefixes, key_layer=layer, **opt)
    keys = tr["keys"].double()
    u = torch.inverse(C) @ keys.mean(0)
    u = u / u.norm()
    v0 = tr["init"][("mlp_out", layer)].double()
    target = v0 + tr["deltas"][("mlp_out", layer)].double()
    right = (target - v0) / torch.dot(keys[0], u)
    return torch.outer(u, right), tr


def reference_range(model, case, layers, site, tr, C, lam, divisor, group_sizes):
    """memit_main / pmet_main: for each layer of the range (ascending), with the lower layers'
    updates in place: the edit's key = mean over context groups of the group's mean key; the
    residual (z − the site's current value at the bare prompt) / divisor(layers left); ΔW_hf =
    resid @ kᵀ (kkᵀ + λC)⁻¹; returned in TransformerLens orientation."""
    from drift.editors.base import Edit, WeightDelta

    z = (tr["init"][site] + tr["deltas"][site]).double()
    tokens, lookup = tr["tokens"][: tr["n"]], torch.tensor(tr["lookup"])
    done = []
    for i, layer in enumerate(layers):
        with torch.no_grad(), Edit(list(done)).applied(model):
            keys = model.capture(tokens, "mlp_key", layer)[torch.arange(len(lookup)), lookup].double()
            cur = model.capture(tokens, site[0], site[1])[0, lookup[0]].double()
        groups, at = [], 0
        for size in group_sizes:
            groups.append(keys[at : at + size].mean(0))
            at += size
        k = torch.stack(groups).mean(0)[:, None]  # [d_mlp, 1]
        resid = ((z - cur) / divisor(len(layers) - i))[:, None]  # [d_model, 1]
        upd_hf = resid @ k.T @ torch.inverse(k @ k.T + lam * C[layer])  # [d_model, d_mlp]
        done.append(WeightDelta("mlp_out", layer, upd_hf.T.float()))
    return [d.delta for d in done]


def _close(got, expected, rel=1e-4):
    got, expected = got.double(), expected.double()
    assert float((got - expected).norm()) <= rel * float(expected.norm()) + 1e-9, (
        float((got - expected).norm()),
        float(expected.norm()),
    )


# ---- ROME ---------------------------------------------------------------------------------------------

ROME_OPT = dict(steps=6, lr=0.5, kl_factor=0.5, weight_decay=0.5, clamp=0.8, early_stop=0.0)


def _rome_hp(**kw):
    o = ROME_OPT
    return ROMEHParams(
        layer=0,
        steps=o["steps"],
        lr=o["lr"],
        kl_factor=o["kl_factor"],
        weight_decay=o["weight_decay"],
        clamp_norm=o["clamp"],
        early_stop=o["early_stop"],
        n_prefixes=3,
        stats_texts=TEXTS,
        **kw,
    )


@pytest.fixture(scope="module")
def rome_reference(tiny):
    C = reference_C(tiny, 0)
    return reference_rome(tiny, EIFFEL, 0, PREFIXES, C, **ROME_OPT)


def test_rome_edit_is_the_reference_algorithm_end_to_end(tiny, rome_reference):
    """Every loss term per pass, v* and ΔW equal the reference's, with the clamp binding: catches a
    changed loss term, the KL read elsewhere, a dropped clamp or a clamp to another norm, the key
    direction from the bare prompt's key instead of the mean key (or the update solved at k̄), the
    other key statistics."""
    expected, tr = rome_reference
    assert tr["clamped"] >= 2  # the clamp binds on this edit
    edit = compute_rome(tiny, EIFFEL, _rome_hp())
    got = edit.info["losses"]
    assert len(got) == len(tr["losses"]) == ROME_OPT["steps"]
    for g, r in zip(got, tr["losses"]):
        for term in ("nll", "kl", "weight_decay"):
            assert g[term] == pytest.approx(r[term], rel=1e-4, abs=1e-7), (term, g, r)
    v_star = tr["init"][("mlp_out", 0)] + tr["deltas"][("mlp_out", 0)]
    _close(edit.info["v_star"], v_star)
    _close(edit.deltas[0].delta, expected)


def test_rome_awd_is_the_reference_algorithm_with_attention_weights_detached(tiny4):
    """ROME-AWD: the same loop with no gradient through the attention weights of the edited layer
    and above. At layer 1 of the 4-layer model the update is half another one than ROME's, so
    dropping the flag on the way is caught."""
    C = reference_C(tiny4, 1)
    plain, _ = reference_rome(tiny4, EIFFEL, 1, PREFIXES, C, **ROME_OPT)
    expected, tr = reference_rome(tiny4, EIFFEL, 1, PREFIXES, C, awd=True, **ROME_OPT)
    assert float((expected - plain).norm()) > 0.1 * float(plain.norm())
    edit = compute_rome(tiny4, EIFFEL, replace(_rome_hp(block_attention_grad=True), layer=1))
    assert edit.info["editor"] == "rome-awd"
    for g, r in zip(edit.info["losses"], tr["losses"], strict=True):
        for term in ("nll", "kl", "weight_decay"):
            assert g[term] == pytest.approx(r[term], rel=1e-4, abs=1e-7), (term, g, r)
    _close(edit.deltas[0].delta, expected)


def test_rome_edit_of_a_several_token_object_is_the_reference_algorithm(tiny):
    """Target token j is read at the prompt's last position + j (teacher forcing): catches the
    tokens read at any other column, which a one-token object cannot tell apart."""
    case = replace(EIFFEL, o_edit="the city of Rome", rewrite=(EIFFEL.prompt,))
    assert len(tiny.encode_target(case.o_edit)) == 4
    C = reference_C(tiny, 0)
    expected, tr = reference_rome(tiny, case, 0, PREFIXES, C, **ROME_OPT)
    edit = compute_rome(tiny, case, _rome_hp())
    for g, r in zip(edit.info["losses"], tr["losses"], strict=True):
        for term in ("nll", "kl", "weight_decay"):
            assert g[term] == pytest.approx(r[term], rel=1e-4, abs=1e-7), (term, g, r)
    _close(edit.deltas[0].delta, expected)


def test_rome_key_direction_is_the_mean_key_not_the_bare_prompts(tiny, rome_reference):
    """The wrong reading, written out, gives a visibly different update: the pin above can tell."""
    expected, tr = rome_reference
    C = reference_C(tiny, 0)
    keys = tr["keys"].double()
    u_bare = torch.inverse(C) @ keys[0]
    u_bare = u_bare / u_bare.norm()
    v = tr["deltas"][("mlp_out", 0)].double()
    wrong = torch.outer(u_bare, v / torch.dot(keys[0], u_bare))
    assert float((wrong - expected).norm()) > 0.05 * float(expected.norm())


def test_rome_anchor_mean_solves_at_the_mean_key(tiny, rome_reference):
    """``anchor="mean"`` (an option): right = (v* − k̄W)/(u · k̄)."""
    _, tr = rome_reference
    C = reference_C(tiny, 0)
    k_bar = tr["keys"].double().mean(0)
    u = torch.inverse(C) @ k_bar
    u = u / u.norm()
    W = tiny.weight("mlp_out", 0).detach().double()
    v_star = (tr["init"][("mlp_out", 0)] + tr["deltas"][("mlp_out", 0)]).double()
    expected = torch.outer(u, (v_star - k_bar @ W) / torch.dot(k_bar, u))
    _close(compute_rome(tiny, EIFFEL, _rome_hp(anchor="mean")).deltas[0].delta, expected)


def test_rome_counts_the_mlp_output_bias_once_on_a_model_that_has_one():
    """compute_v: right = (v* − cur_output)/(k_bare · u), cur_output the MLP's real output: with a
    bias (GPT-2's c_proj), the bare prompt still gets exactly v* (k_bare·W alone would add b)."""
    from drift.model.tiny import tiny_family

    model = tiny_family("gpt2")
    params = dict(model.hooked.named_parameters())
    bias = [p for n, p in params.items() if ".h.0." in n and "c_proj" in n and n.endswith("bias")]
    assert len(bias) == 1
    with torch.no_grad():
        bias[0].copy_(torch.randn(bias[0].shape, generator=torch.Generator().manual_seed(0)))
    edit = compute_rome(model, EIFFEL, replace(_rome_hp(), steps=3))
    tokens = torch.tensor([model.encode(EIFFEL.prompt)])
    pos = model.subject_positions(EIFFEL.prompt, EIFFEL.subject)[-1]
    with edit.applied(model):
        out = model.capture(tokens, "mlp_out", 0)[0, pos]
    torch.testing.assert_close(out, edit.info["v_star"], rtol=1e-4, atol=1e-5)
    assert float(bias[0].norm()) > 10 * float((out - edit.info["v_star"]).norm())


def test_rome_uses_its_own_21_contexts_and_memit_its_6(tiny, monkeypatch):
    """ROME's contexts are the bare prompt + 10 texts of 5 tokens + 10 of 10 (21); MEMIT's and
    PMET's the bare prompt + 5 of 10 tokens (6), their key the mean of the two groups' means."""
    import drift.editors.memit as memit_mod
    import drift.editors.rome as rome_mod

    seen = {}

    def spy(module, name):
        real = getattr(module, "optimise_many")

        def fn(model, cases, sites, terms, **kw):
            seen[name] = list(kw["prefixes"])
            return real(model, cases, sites, terms, **{**kw, "steps": 1})

        monkeypatch.setattr(module, "optimise_many", fn)

    spy(rome_mod, "rome")
    spy(memit_mod, "memit")
    compute_rome(tiny, EIFFEL, ROMEHParams(layer=0, steps=1, stats_texts=CORPUS))
    memit = compute_memit(tiny, EIFFEL, MEMITHParams(layers=(0,), steps=1, stats_texts=CORPUS))
    rome = seen["rome"]
    assert len(rome) == 21 and rome[0] == ""
    # 5 tokens: the seed word + 4 sampled, then ". "; 10 tokens: the seed word + 9
    short = [len(tiny.encode(p[:-2], prepend_bos=False)) for p in rome[1:11]]
    long = [len(tiny.encode(p[:-2], prepend_bos=False)) for p in rome[11:]]
    assert sum(short) < sum(long)
    assert len(seen["memit"]) == 6 and seen["memit"][0] == ""
    assert memit.deltas[0].delta.shape == (tiny.cfg.d_mlp, tiny.cfg.d_model)


# ---- MEMIT and PMET -----------------------------------------------------------------------------------

RANGE_OPT = dict(steps=5, lr=0.5, kl_factor=0.5, weight_decay=0.5, early_stop=0.0)


def _range_hp(cls, **kw):
    o = RANGE_OPT
    return cls(
        layers=(0, 1),
        steps=o["steps"],
        lr=o["lr"],
        kl_factor=o["kl_factor"],
        weight_decay=o["weight_decay"],
        early_stop=o["early_stop"],
        n_prefixes=3,
        mom2_weight=3.0,
        stats_texts=TEXTS,
        **kw,
    )


@pytest.mark.parametrize("case", [EIFFEL, TOWER], ids=["eiffel", "tower"])
def test_memit_edit_is_the_reference_algorithm_end_to_end(tiny4, case):
    """z at the residual after the last layer (clamped to 0.75‖h_L‖: it binds here); each layer's
    update from the mean of the context groups' mean keys (bare: ½, the two prefixed: ¼ each) and
    the residual divided evenly among the layers left; on TOWER the target becomes the argmax,
    where MEMIT keeps its NLL weight (no PMET schedule). Catches PMET's square-root spread or
    schedule, equal key weights, another clamp, a dropped group mean inside compute_range_edit."""
    site = ("resid_post", 1)
    tr = reference_optimise(tiny4, case, [site], PREFIXES, clamp=0.75, **RANGE_OPT)
    assert tr["clamped"] >= 1
    if case is TOWER:
        assert tr["argmax"] >= 1 and len(tr["losses"]) == RANGE_OPT["steps"]
    C = {l: reference_C(tiny4, l) for l in (0, 1)}
    expected = reference_range(tiny4, case, [0, 1], site, tr, C, 3.0, lambda n: n, [1, 2])
    edit = compute_memit(tiny4, case, _range_hp(MEMITHParams, clamp_norm=0.75))
    _same_losses(edit.info["losses"], tr["losses"])
    for got, exp in zip([d.delta for d in edit.deltas], expected, strict=True):
        _close(got, exp, rel=1e-3)


def _same_losses(got, expected):
    assert len(got) == len(expected), (got, expected)
    for g, r in zip(got, expected):
        for term in r:
            if term != "total":  # a KL of ~1e-3 carries float32 rounding of ~1e-6
                assert g[term] == pytest.approx(r[term], rel=1e-3, abs=2e-6), (term, g, r)


# kl_factor 5: the KL term stays above 0.01, so the 0.1 NLL weight is used for several updates;
# kl_factor 1e-3: the KL term is ≤ 0.01 at the first pass where "in" is the argmax: the KL stop.
PMET_RUNS = {"weight 0.1": dict(kl_factor=5.0), "kl stop": dict(kl_factor=1e-3)}


@pytest.mark.parametrize("run", list(PMET_RUNS))
def test_pmet_edit_is_the_reference_algorithm_with_its_schedule(tiny4, run):
    """Both vectors (attention and MLP output of the last layer) each clamped to 4‖its v₀‖ and in
    the weight decay; NLL × 0.1 after a pass where every target token is the argmax; the KL stop;
    only the MLP target written, spread with the square-root divisor. Catches MEMIT's even spread,
    a dropped 0.1 or KL stop, one component left out of the decay or the clamp."""
    o = dict(steps=10, lr=0.5, weight_decay=0.05, early_stop=0.0, **PMET_RUNS[run])
    sites = [("attn_out", 1), ("mlp_out", 1)]
    tr = reference_optimise(tiny4, TOWER, sites, PREFIXES, clamp=4.0, pmet=True, **o)
    assert tr["clamped"] >= 1
    if run == "weight 0.1":
        assert tr["scaled"] >= 2 and not tr["kl_stop"], tr["losses"]
    else:
        assert tr["kl_stop"] and len(tr["losses"]) < o["steps"], tr["losses"]
    C = {l: reference_C(tiny4, l) for l in (0, 1)}
    expected = reference_range(tiny4, TOWER, [0, 1], ("mlp_out", 1), tr, C, 3.0, lambda n: n**0.5, [1, 2])
    hp = PMETHParams(
        layers=(0, 1),
        n_prefixes=3,
        mom2_weight=3.0,
        stats_texts=TEXTS,
        clamp_norm=4.0,
        steps=o["steps"],
        lr=o["lr"],
        kl_factor=o["kl_factor"],
        weight_decay=o["weight_decay"],
        early_stop=o["early_stop"],
    )
    edit = compute_pmet(tiny4, TOWER, hp)
    _same_losses(edit.info["losses"], tr["losses"])
    for got, exp in zip([d.delta for d in edit.deltas], expected, strict=True):
        _close(got, exp, rel=1e-3)


@pytest.mark.parametrize("kl_factor", [1e-3, 5.0], ids=["kl stop", "weight 0.1"])
def test_pmets_schedule_in_a_batch_watches_each_cases_own_target_tokens(tiny4, kl_factor):
    """TOWER's target becomes the argmax, EIFFEL's never does: batched in either order, each case
    follows the schedule it follows alone (TOWER's KL stop after 2 passes, or its 0.1 NLL weight),
    so the argmax is checked on the case's own target tokens only."""
    from drift.editors.objectives import default_terms
    from drift.editors.target import optimise_many, optimise_targets

    sites = [("attn_out", 1), ("mlp_out", 1)]
    kw = dict(prefixes=PREFIXES, steps=10, lr=0.5, pmet_schedule=True, clamp_norm=4.0, early_stop=0.0)
    alone = {
        c.case_id: optimise_targets(tiny4, c, sites, default_terms(kl_factor, 0.05), **kw)
        for c in (EIFFEL, TOWER)
    }
    tower = alone["tower"].losses
    assert len(tower) == 2 if kl_factor < 1 else min(l["nll"] for l in tower) < 0.2 * tower[0]["nll"]
    for order in ([EIFFEL, TOWER], [TOWER, EIFFEL]):
        for case, res in zip(order, optimise_many(tiny4, order, sites, default_terms(kl_factor, 0.05), **kw)):
            _same_losses(res.losses, alone[case.case_id].losses)


def test_optimise_defaults_are_the_reference_romes_settings(tiny4):
    """Left unset, the optimisation runs the reference ROME's: 20 passes, Adam at lr 0.5, the clamp
    at 4‖v₀‖, early stop below 5e-2 on the total, no PMET schedule, gradient through attention. On
    TOWER the target becomes the argmax (where a PMET schedule would act); a constant −5.3 puts the
    total near 0.5, between the stop and any cut above 1."""
    from drift.editors.objectives import default_terms
    from drift.editors.target import optimise_targets

    site = [("resid_post", 1)]
    terms = default_terms(0.0625, 0.5) + [ConstantTerm(-5.3, "shift")]
    default = optimise_targets(tiny4, TOWER, site, terms, prefixes=PREFIXES)
    spelled = dict(steps=20, lr=0.5, clamp_norm=4.0, early_stop=5e-2, stop_on="total", pmet_schedule=False)
    same = optimise_targets(
        tiny4, TOWER, site, terms, prefixes=PREFIXES, block_attention_grad=False, **spelled
    )
    assert len(default.losses) == 20 and default.losses == same.losses
    assert all(0.05 < sum(l.values()) - l["p_target"] for l in default.losses)
    assert torch.equal(default.deltas[site[0]], same.deltas[site[0]])
    scheduled = optimise_targets(tiny4, TOWER, site, terms, prefixes=PREFIXES, pmet_schedule=True)
    assert scheduled.losses != default.losses  # the schedule would have acted


# ---- SADR, through its own hooks -------------------------------------------------------------------


class _Model:
    """What SADR.hooks reads of a model: its hook names and depth."""

    class cfg:
        n_layers = 3

    @staticmethod
    def hook_name(site, layer):
        return f"blocks.{layer}.attn.hook_{site}"


def _sadr_through_hooks(term, batch, patterns, step):
    """Run ``term``'s own hooks on full attention patterns ``[layer][rows, heads, q, k]`` as the
    forward pass would hand them over (rows in the activations' order, query columns from
    ``batch.offset`` on), then call it; returns its value."""
    extras = {"model": _Model(), "batch": batch}
    order = batch.act_rows()
    for name, fn in term.hooks(batch, extras):
        layer = int(name.split(".")[1])
        act = torch.zeros_like(patterns[layer])
        act[order] = patterns[layer]  # row b of the batch is activation row order[b]
        fn(act[:, :, batch.offset :, :], None)
    return term(_step(step=step, extras=extras))


def test_sadr_through_its_hooks_is_the_reference_hinge_kl_on_the_predicting_row():
    """SADR's hooks pick, from each layer's attention patterns, the row predicting the first target
    token of each rewriting prompt (not a neighbouring row, not the KL prompt's), for every layer
    from the edit layer on, in the rows and columns of a forward pass run from an offset with the
    case's rows anywhere in the batch; the value equals the reference's hinge KL on the full
    patterns. Catches a neighbouring row or column, the offset or row order ignored, the layers
    below the edit layer counted, the mask (strictly above the vanilla maximum) or γ's scale
    changed."""
    g = torch.Generator().manual_seed(3)
    n, heads, pos, offset, start = 3, 4, 9, 2, 1
    predict, lookup = [7, 6, 8], [3, 2, 4]
    shape = (n + 1, heads, pos, pos)
    van = [(3 * torch.randn(shape, generator=g)).softmax(-1) for _ in range(3)]
    cur = [(v.log() + 2.5 * torch.randn(shape, generator=g)).softmax(-1) for v in van]
    for v, c in zip(van, cur):  # a tie: prompt 0's strongest head keeps exactly the vanilla maximum on
        h = int(v[0, :, predict[0], lookup[0]].argmax())  # the subject while its other weights move
        others = [j for j in range(pos) if j != lookup[0]]
        c[0, h, predict[0]] = v[0, h, predict[0]]
        c[0, h, predict[0], others] = v[0, h, predict[0], others].roll(1)  # (strictly above: not restrained)
    batch = EditBatch(
        tokens=torch.zeros(n + 1, pos, dtype=torch.long),
        lookup=torch.tensor(lookup + [1]),
        query=torch.tensor(predict + [5]),
        n_rewrite=n,
        start_layer=start,
        offset=offset,
        rows=torch.tensor([2, 0, 3, 1]),
    )
    term = SADR(gamma=1e-2)
    assert float(_sadr_through_hooks(term, batch, van, 0)) == 0.0  # the first pass records the rows
    got = _sadr_through_hooks(term, batch, cur, 1)
    ref = _reference_sadr(van[start:], cur[start:], predict, lookup, weight=100.0)
    assert float(ref) > 0
    torch.testing.assert_close(got, ref.to(got.dtype), rtol=1e-5, atol=1e-9)
    # every head of a layer below the edit layer would have counted too: the pin can tell
    assert float(_reference_sadr(van, cur, predict, lookup, weight=100.0)) > 1.01 * float(ref)


def test_an_empty_context_group_is_refused():
    from drift.editors.spread import group_mean_weights

    for sizes in ([], [1, 0]):
        with pytest.raises(ValueError, match="at least one prompt"):
            group_mean_weights(sizes)


def test_early_stop_watches_the_total_loss_or_the_nll_when_asked(tiny):
    """A threshold between the NLL and the total loss (the NLL plus a constant 1): the reference's
    total-loss stop runs on, ``stop_on="nll"`` stops after the first pass."""
    from drift.editors.objectives import default_terms
    from drift.editors.target import optimise_targets

    terms = default_terms(0.0625, 0.5) + [ConstantTerm()]
    first = optimise_targets(tiny, EIFFEL, [("mlp_out", 0)], terms, steps=1, early_stop=0.0).losses[0]
    cut = first["nll"] + 0.5  # above the NLL, below NLL + 1
    total = optimise_targets(tiny, EIFFEL, [("mlp_out", 0)], terms, steps=3, early_stop=cut)
    nll = optimise_targets(tiny, EIFFEL, [("mlp_out", 0)], terms, steps=3, early_stop=cut, stop_on="nll")
    assert len(total.losses) == 3 and len(nll.losses) == 1
    # strictly below (the reference's ``loss < 5e-2``): a loss equal to the threshold runs on
    tie = optimise_targets(
        tiny, EIFFEL, [("mlp_out", 0)], terms, steps=3, early_stop=first["nll"], stop_on="nll"
    )
    assert len(tie.losses) > 1


def test_adaple_eq4_reads_the_current_weight_of_each_layer(tiny):
    """Eq. 4's right-hand side V₂ − 3KW₀ needs the layer's current weight, which the layer loop
    hands to the solve (MEMIT's, PMET's and Algorithm 1's solves ignore it; the formula itself is
    pinned by ``test_fidelity.py::test_adaple_solves_are_algorithm1_and_eq4``): end to end, Eq. 4's
    update is rank one like Algorithm 1's and differs from it."""
    from drift.editors.adaple import AdaPLEHParams, compute_adaple

    hp = AdaPLEHParams(layers=(0,), steps=2, n_prefixes=3, stats_texts=TEXTS, drop_rate=0.0, mom2_weight=3.0)
    alg1 = compute_adaple(tiny, EIFFEL, hp).deltas[0].delta.double()
    eq4 = compute_adaple(tiny, EIFFEL, replace(hp, residual="eq4")).deltas[0].delta.double()
    S = torch.linalg.svdvals(eq4)
    assert torch.isfinite(eq4).all() and float(S[1]) < 1e-4 * float(S[0])
    assert float((eq4 - alg1).norm()) > 1e-3 * float(alg1.norm())


def _loss_step(kl_logp: torch.Tensor, vanilla: torch.Tensor, delta: torch.Tensor, v0_norm: float):
    from drift.editors.objectives import Step

    return Step(
        step=0,
        target_logp=torch.zeros(1),
        kl_logp=kl_logp,
        vanilla_kl_logp=vanilla,
        deltas={"mlp_out@1": delta},
        v0_norms={"mlp_out@1": torch.tensor(v0_norm)},
    )


def test_the_kl_term_is_the_mean_over_kl_prompts_of_kl_edited_to_vanilla():
    """KL(P_edited ‖ P_vanilla) per KL prompt, then the mean over prompts (the reference's
    ``kl_div(..., reduction="batchmean")``): not the sum over prompts, not the other direction."""
    from drift.editors.objectives import default_terms

    g = torch.Generator().manual_seed(0)
    edited = torch.randn(3, 11, generator=g).log_softmax(-1)
    vanilla = torch.randn(3, 11, generator=g).log_softmax(-1)
    per_prompt = [float((e.exp() * (e - v)).sum()) for e, v in zip(edited, vanilla)]
    _, kl, _ = default_terms(kl_factor=0.5, weight_decay=0.0)
    got = float(kl(_loss_step(edited, vanilla, torch.zeros(4), 1.0)))
    assert got == pytest.approx(0.5 * sum(per_prompt) / 3, rel=1e-5)


@pytest.mark.parametrize(("squared", "power"), [(False, 1), (True, 2)])
def test_weight_decay_is_the_norm_or_its_square_over_v0s_squared_norm(squared, power):
    """λ‖δ‖/‖v₀‖² (the reference) by default; λ‖δ‖²/‖v₀‖² when ``squared_decay`` asks."""
    from drift.editors.objectives import default_terms

    delta = torch.tensor([3.0, 4.0, 0.0, 0.0])  # ‖δ‖ = 5
    _, _, decay = default_terms(kl_factor=0.0, weight_decay=0.5, squared_decay=squared)
    (default_decay,) = [t for t in default_terms(0.0, 0.5) if t.name == "weight_decay"]
    step = _loss_step(torch.zeros(1, 3), torch.zeros(1, 3), delta, 2.0)
    assert float(decay(step)) == pytest.approx(0.5 * 5.0**power / 4.0)
    assert float(default_decay(step)) == pytest.approx(0.5 * 5.0 / 4.0)


def test_every_metric_compares_its_own_prompts_right_answer_against_its_wrong_one():
    """The whole pairing table of the metrics (the reference's evaluation), written out: which
    prompts each metric reads, which answer must win and which must lose."""
    from drift.data import Commonsense, EditCase, Probe
    from drift.evaluation.metrics import plan_case

    case = EditCase(
        case_id="c",
        subject="Eiffel Tower",
        prompt="The Eiffel Tower is in",
        o_true="Paris",
        o_edit="Rome",
        rewrite=("The Eiffel Tower is in",),
        paraphrase=("Where is the Eiffel Tower? It is in",),
        neighborhood=(Probe("The Louvre is in", "Paris"),),
        relation=(Probe("The Eiffel Tower was designed by", "Gustave Eiffel"),),
        reasoning=(Probe("The Eiffel Tower's country's capital is", "Rome"),),
        subject_alias=(Probe("La tour Eiffel is in", "Rome"),),
        commonsense=Commonsense("A tower is", "tall", "liquid"),
    )
    sentence = "The Eiffel Tower is in Rome."
    want = {
        "ES": ("The Eiffel Tower is in", "Rome", "Paris"),
        "PS": ("Where is the Eiffel Tower? It is in", "Rome", "Paris"),
        "NS": ("The Louvre is in", "Paris", "Rome"),
        "RS": ("The Eiffel Tower was designed by", "Gustave Eiffel", "Rome"),
        "DNS": (f"{sentence} The Louvre is in", "Paris", "Rome"),
        "SAS": ("La tour Eiffel is in", "Rome", "Paris"),
        "RES": ("The Eiffel Tower's country's capital is", "Rome", "Paris"),
        "OS": ("A tower is", "tall", "liquid"),
        "DOS": (f"{sentence} A tower is", "tall", "liquid"),
    }
    plan = plan_case(case)
    got = {}
    for metric, comparisons in plan.comparisons.items():
        ((right, wrong),) = comparisons
        (p, r), (q, w) = plan.pairs[right], plan.pairs[wrong]
        assert p == q, metric  # both answers on the same prompt
        got[metric] = (p, r, w)
    assert got == want
    # without commonsense data, or when asked not to, no OS/DOS; RES by accuracy is no comparison
    assert "OS" not in plan_case(case, commonsense=False).comparisons
    acc = plan_case(case, res="accuracy")
    assert "RES" not in acc.comparisons and "RES" in acc.accuracies


def test_a_bad_res_form_is_refused_by_the_plan():
    from drift.data import EditCase
    from drift.evaluation.metrics import plan_case

    with pytest.raises(ValueError, match="res must be one of"):
        plan_case(EditCase.simple("The Eiffel Tower is in", "Eiffel Tower", "Rome", "Paris"), res="bogus")


def test_the_pooled_interval_is_the_ratio_estimate_with_cases_as_clusters():
    """Per-case means mᵢ over kᵢ prompts: R = Σkᵢmᵢ/Σkᵢ, se² = n/(n−1)·Σkᵢ²(mᵢ−R)²/(Σkᵢ)², Student
    t with n−1 degrees of freedom; missing means and cases without prompts left out."""
    from scipy.stats import t

    from drift.evaluation.metrics import pooled_ci95

    means = [100.0, 0.0, 50.0, float("nan"), 30.0]
    counts = [4, 1, 2, 3, 0]
    m, k = [100.0, 0.0, 50.0], [4.0, 1.0, 2.0]
    r = sum(a * b for a, b in zip(m, k)) / sum(k)  # 500 / 7
    se = (3 / 2 * sum(b * b * (a - r) ** 2 for a, b in zip(m, k))) ** 0.5 / sum(k)
    half = t.ppf(0.975, 2) * se
    got = pooled_ci95(means, counts)
    assert got == pytest.approx((r, r - half, r + half), rel=1e-9)
    assert pooled_ci95([40.0], [3]) == (40.0, 40.0, 40.0)  # one case: no interval
    assert pooled_ci95([20.0, 20.0], [1, 5]) == (20.0, 20.0, 20.0)  # no spread
    half = t.ppf(0.975, 1) * 0.25  # a small spread (se 0.25) still has its interval
    assert pooled_ci95([50.0, 50.5], [1, 1]) == pytest.approx((50.25, 50.25 - half, 50.25 + half), rel=1e-9)
    assert all(x != x for x in pooled_ci95([float("nan")], [2]))  # nothing left: NaN


def test_fluency_of_texts_too_short_for_some_n_grams():
    """A text with one bigram and no trigram has entropy 0 for both; one word, no n-gram at all."""
    from drift.evaluation.metrics import n_gram_entropy

    assert n_gram_entropy(["hello world"], words="whitespace") == 0.0
    assert n_gram_entropy(["hello"], words="whitespace") == 0.0
    # "a b a b": bigrams ab, ba, ab (H = h(1/3)); trigrams aba, bab (H = 1 bit); weights 2/3, 4/3
    h = -(1 / 3 * math.log2(1 / 3) + 2 / 3 * math.log2(2 / 3))
    assert n_gram_entropy(["a b a b"], words="whitespace") == pytest.approx((2 / 3 * h + 4 / 3 * 1.0) / 2)


def test_tfidf_similarity_of_a_word_every_document_holds():
    """idf = ln((1 + n)/(1 + df)) + 1 is 1 for a word in every document: its vector has norm 1,
    and the cosine is still computed (NaN only when a text has no known word)."""
    from drift.evaluation.metrics import TfidfStats, tfidf_similarity

    stats = TfidfStats.fit(["tower one", "tower two"])
    one = math.log(3 / 2) + 1
    assert tfidf_similarity("tower", "tower one", stats) == pytest.approx(1 / math.sqrt(1 + one**2))
    assert tfidf_similarity("one", "tower", stats) == 0.0
    assert math.isnan(tfidf_similarity("unknown words", "tower", stats))
    assert math.isnan(tfidf_similarity("tower", "", stats))


def test_a_tie_is_not_a_success_and_product_scoring_reads_whole_target_magnitudes():
    """Score: right strictly above wrong. Magnitude: exp of the per-token mean log-prob
    ("mean") or of the whole target's log-prob ("product")."""
    from drift.evaluation.metrics import CasePlan

    plan = CasePlan()
    plan.compare("NS", plan.pair("a", "x y"), plan.pair("a", "z"))
    lp, n = torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 1.0])  # per token: −1 and −1, a tie
    mean = plan.metrics(lp, torch.ones(2), n, scoring="mean")
    assert mean["NS"] == 0.0 and mean["NM"] == pytest.approx(100 * math.exp(-1.0))
    product = plan.metrics(lp, torch.ones(2), n, scoring="product")
    assert product["NS"] == 0.0 and product["NM"] == pytest.approx(100 * math.exp(-2.0))
    assert mean["NS_k"] == 1 and mean["NM_k"] == 1


def test_the_case_mean_interval_is_student_t_on_the_standard_error():
    from scipy.stats import t

    from drift.evaluation.metrics import mean_ci95

    vals = [1.0, 2.0, 4.0, 8.0, None, float("nan")]
    x = [1.0, 2.0, 4.0, 8.0]
    m = sum(x) / 4
    sem = (sum((v - m) ** 2 for v in x) / 3) ** 0.5 / 2
    half = t.ppf(0.975, 3) * sem
    assert mean_ci95(vals) == pytest.approx((m, m - half, m + half), rel=1e-9)
    small = [0.1, 0.2, 0.3]  # a standard error below 1 still gets its interval
    assert mean_ci95(small)[1] < 0.2 < mean_ci95(small)[2]
    assert mean_ci95([5.0]) == (5.0, 5.0, 5.0)
