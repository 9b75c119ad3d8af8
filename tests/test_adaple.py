"""AdaPLE: the erase-old solve against its objective, the editor on the tiny and the real model,
and drop-and-rescale as an option of every editor."""

from __future__ import annotations

import pytest
import torch

from drift.editors import get_compute, get_editor
from drift.editors.adaple import AdaPLEHParams, compute_adaple, erase_old_delta
from tests.conftest import weights_hash
from tests.test_rome import CORPUS, EIFFEL


def _problem(n=3, d_in=12, d_out=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    W0 = torch.randn(d_in, d_out, generator=g, dtype=torch.float64)
    R = torch.randn(n, d_out, generator=g, dtype=torch.float64)
    A = torch.randn(d_in, d_in, generator=g, dtype=torch.float64)
    return K, W0, R, A @ A.T / d_in


def _objective(W, W0, K, R, C, lam):
    """The paper's objective as its normal equation (App. C.1) reads it: keep the old keys (C),
    fit the new values V₂ = K W₀ + R, and fit the negated old values −V₁ = −K W₀."""
    V1 = K @ W0
    dW = W - W0
    return lam * torch.trace(dW.T @ C @ dW) + ((K @ W - (V1 + R)) ** 2).sum() + ((K @ W + V1) ** 2).sum()


def test_erase_old_delta_minimises_the_adaple_objective():
    K, W0, R, C = _problem()
    lam = 0.7
    delta = erase_old_delta(K, R, W0, C, lam).double()
    W = (W0 + delta).requires_grad_(True)
    _objective(W, W0, K, R, C, lam).backward()
    assert W.grad.abs().max() < 1e-3 * (K.abs().max() ** 2) * W0.abs().max()
    best = _objective(W0 + delta, W0, K, R, C, lam)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        step = 1e-2 * torch.randn(W0.shape, generator=g, dtype=torch.float64)
        assert _objective(W0 + delta + step, W0, K, R, C, lam) > best


def test_erase_old_delta_halves_towards_the_new_value_without_a_prior():
    """With almost nothing to keep (λ → 0) the edited keys read (V₂ − V₁) / 2: the old value is erased."""
    K, W0, R, C = _problem()
    delta = erase_old_delta(K, R, W0, C, 1e-9).double()
    torch.testing.assert_close(K @ (W0 + delta), R / 2, atol=1e-3, rtol=1e-3)


def test_adaple_on_tiny_model_writes_only_mlp_weights(tiny):
    h0 = weights_hash(tiny)
    edit = compute_adaple(
        tiny, EIFFEL, AdaPLEHParams(layers=(0, 1), steps=2, n_prefixes=2, stats_texts=CORPUS)
    )
    assert weights_hash(tiny) == h0
    assert [(d.which, d.layer) for d in edit.deltas] == [("W_out", 0), ("W_out", 1)]
    assert edit.info["editor"] == "adaple"


def _zero_fraction(edit) -> float:
    return sum(int((d.delta == 0).sum()) for d in edit.deltas) / sum(d.delta.numel() for d in edit.deltas)


def test_drop_rate_is_an_option_of_every_editor_and_on_by_default_for_adaple(tiny):
    hp = {"layers": (0, 1), "steps": 2, "n_prefixes": 1, "stats_texts": CORPUS}
    plain = get_compute("adaple", drop_rate=0, **hp)(tiny, EIFFEL)
    default = get_compute("adaple", **hp)(tiny, EIFFEL)
    assert _zero_fraction(plain) < 0.01
    assert abs(_zero_fraction(default) - 0.8) < 0.02
    rome = get_compute("rome", drop_rate=0.5, layer=1, steps=2, n_prefixes=1, stats_texts=CORPUS)(
        tiny, EIFFEL
    )
    assert abs(_zero_fraction(rome) - 0.5) < 0.02 and rome.info["fusion"]["drop_and_rescale"] == 0.5


def test_drop_masks_differ_between_cases_and_repeat_for_the_same_case(tiny):
    """Stacked edits must get independent masks (the point of the fusion), reruns the same one."""
    from dataclasses import replace

    other = replace(EIFFEL, case_id="other")
    compute = get_compute("rome", drop_rate=0.5, layer=1, steps=2, n_prefixes=1, stats_texts=CORPUS)
    a, b, c = compute(tiny, EIFFEL), compute(tiny, EIFFEL), compute(tiny, other)
    mask = lambda e: e.deltas[0].delta != 0  # noqa: E731
    assert torch.equal(mask(a), mask(b)) and not torch.equal(mask(a), mask(c))


@pytest.mark.parametrize("p", [1.0, -0.2])
def test_bad_drop_rate_is_named(p):
    with pytest.raises(ValueError, match="drop rate must be in"):
        get_compute("memit", drop_rate=p)
    with pytest.raises(ValueError, match="need an editor"):
        get_editor("none", drop_rate=0.5)


@pytest.mark.slow
def test_adaple_erases_the_old_fact_on_the_real_model_and_is_removed_exactly(real):
    """The erase-old term shows: P(Paris) collapses (0.70 → 0.03 measured) while P(Rome) rises less
    than under PMET (0.006 → 0.02), since the edited keys read (V₂ − V₁)/2 rather than V₂."""
    h0 = weights_hash(real)
    rome, paris = real.target_prob(EIFFEL.prompt, "Rome"), real.target_prob(EIFFEL.prompt, "Paris")
    edit = get_compute("adaple", drop_rate=0)(real, EIFFEL)
    assert weights_hash(real) == h0 and [d.layer for d in edit.deltas] == [3, 4, 5]
    with edit.applied(real):
        assert real.target_prob(EIFFEL.prompt, "Paris") < 0.2 * paris
        assert real.target_prob(EIFFEL.prompt, "Rome") > 2 * rome
    assert weights_hash(real) == h0
