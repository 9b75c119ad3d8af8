"""Tracing specialisations, drift factors, correlations and figures on hand-made and tiny inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from drift import plots, tracing
from drift.attention_drift import factors, measure
from drift.correlate import pearson
from drift.data import parse_case
from drift.editors.base import Edit, WeightDelta

ROOT = Path(__file__).resolve().parents[1]
CASE = parse_case(
    {
        "case_id": "eiffel",
        "requested_rewrite": {
            "prompt": "The Eiffel Tower is located in",
            "subject": "Eiffel Tower",
            "target_new": "Rome",
            "target_true": "Paris",
        },
        "rewrite": {"prompts": ["The Eiffel Tower is located in"], "targets": ["Rome"]},
        "l-neighbor": {"prompts": ["The Louvre is located in"], "targets": ["Paris"]},
        "l-relation": {"prompts": ["The Eiffel Tower was designed by"], "targets": ["Gustave Eiffel"]},
    }
)


def test_windows_are_clipped_to_the_model():
    assert list(tracing.centred(0, 6, 30)) == [0, 1, 2]
    assert list(tracing.centred(10, 6, 30)) == [7, 8, 9, 10, 11, 12]
    assert list(tracing.centred(29, 6, 30)) == [26, 27, 28, 29]
    assert list(tracing.starting(25, 10, 30)) == [25, 26, 27, 28, 29]


def test_distracting_prompt_tokens_are_grouped(tiny):
    p = tracing.distracting_prompt(tiny, CASE)
    assert p.text == "The Eiffel Tower is located in Rome. The Louvre is located in"
    assert p.groups[-1] == "last token" and p.groups[p.subject_last] == "subject last"
    assert "test prompt" in p.groups and "subject first" in p.groups
    first_test = p.groups.index("test prompt")
    assert "".join(p.labels[first_test:]).strip() == "The Louvre is located in"
    r = tracing.relation_prompt(tiny, CASE)
    assert r.answer == "Gustave Eiffel" and "test prompt" not in r.groups


def _scan(groups, effect):
    p = tracing.Prompt(
        "x",
        torch.zeros(1, len(groups), dtype=torch.long),
        list("abcdefg")[: len(groups)],
        groups,
        0,
        "a",
        torch.tensor([0, 1]),
    )
    probs = torch.tensor(effect, dtype=torch.float).view(1, len(groups), 1).expand(1, len(groups), 2)
    return tracing.PatchScan("substitution:mlp", probs, torch.zeros(2), torch.zeros(2), p, 6)


def test_align_averages_tokens_within_groups_then_over_prompts():
    a = _scan(["subject first", "subject last", "last token"], [1.0, 2.0, 3.0])
    b = _scan(
        ["subject first", "subject middle", "subject last", "after subject", "last token"],
        [3.0, 5.0, 4.0, 7.0, 5.0],
    )
    grid, names = tracing.align([a, b])
    assert names == ["subject first", "subject middle", "subject last", "after subject", "last token"]
    assert grid[0, :, 0].tolist() == [2.0, 5.0, 3.0, 7.0, 4.0]


def test_drift_of_a_zero_edit_is_zero_and_of_a_real_edit_positive(tiny):
    p = tracing.distracting_prompt(tiny, CASE)
    zero = Edit([WeightDelta("mlp_out", 0, torch.zeros(64, 32))])
    d = measure(tiny, zero, p, CASE.o_edit)
    assert d.kl.shape == (2, tiny.cfg.n_heads) and float(d.kl.abs().max()) < 1e-6
    assert d.hidden_l2 == 0 and math.isclose(d.hidden_cos, 1.0, rel_tol=1e-5)
    big = Edit(
        [WeightDelta("mlp_out", 0, 3 * torch.randn(64, 32, generator=torch.Generator().manual_seed(0)))]
    )
    d = measure(tiny, big, p, CASE.o_edit)
    assert float(d.kl.min()) >= 0 and float(d.kl.sum()) > 1e-4
    f = factors(d, [1])
    assert f["kl_drift"] == pytest.approx(float(d.kl[1].sum()))
    assert f["max_subject_gain"] == pytest.approx(float(d.subject_gain[1].max()))


def test_layer_substitution_copies_the_whole_hidden_state(tiny):
    """The "layer" kind substitutes the block's output, the hidden state itself: the edited state
    at the last token after the top layer gives the edited model's own prediction. The top MLP's
    output alone does not: the vanilla residual under it stays."""
    p = tracing.distracting_prompt(tiny, CASE)
    delta = 3 * torch.randn(64, 32, generator=torch.Generator().manual_seed(2))
    edit = Edit([WeightDelta("mlp_out", 0, delta)])
    L, T = tiny.cfg.n_layers, p.tokens.shape[1]
    layer = tracing.contaminating_substitution(tiny, edit, p, "layer", window=1)
    mlp = tracing.contaminating_substitution(tiny, edit, p, "mlp", window=1)
    assert not torch.allclose(layer.edited, layer.vanilla, rtol=0.05)  # the edit moves the prediction
    torch.testing.assert_close(layer.probs[L - 1, T - 1], layer.edited, rtol=1e-4, atol=1e-8)
    assert not torch.allclose(mlp.probs[L - 1, T - 1], layer.edited, rtol=0.02)


def test_drift_scores_a_multi_token_answer_per_token_as_the_reference(tiny):
    """P(o_edit) in the drift rows is exp(mean log-probability per target token) by default, the
    reference evaluation's score; ``scoring="product"`` multiplies the tokens' probabilities."""
    p = tracing.distracting_prompt(tiny, CASE)
    edit = Edit([WeightDelta("mlp_out", 0, torch.randn(64, 32, generator=torch.Generator().manual_seed(1)))])
    target = "Rome Lazio Italy"
    ids = tiny.encode_target(target)
    assert len(ids) > 1
    with torch.no_grad(), edit.applied(tiny):
        tokens = torch.tensor([tiny.encode(p.text) + ids[:-1]])
        logp = tiny.forward(tokens)[0].float().log_softmax(-1)
    n = len(ids)
    per_token = torch.stack([logp[-n + i, t] for i, t in enumerate(ids)])  # [n]
    mean, product = measure(tiny, edit, p, target), measure(tiny, edit, p, target, "product")
    assert mean.p_edit == pytest.approx(float(per_token.mean().exp()), rel=1e-4)
    assert product.p_edit == pytest.approx(float(per_token.sum().exp()), rel=1e-4)
    with pytest.raises(ValueError, match="scoring"):
        measure(tiny, edit, p, target, "geometric")


def test_pearson_matches_numpy_and_flags_constant_columns():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = 2.0 * x + rng.normal(size=30)
    rows = [{"f": a, "c": 1.0, "p_edit": b} for a, b in zip(x, y, strict=True)]
    r = pearson(rows, ["f", "c"])
    assert r["f"].rho == pytest.approx(np.corrcoef(x, y)[0, 1]) and 0 < r["f"].p < 0.05 and r["f"].n == 30
    assert math.isnan(r["c"].rho)


def test_figures_are_written_as_html_and_png(tmp_path):
    fig = plots.heatmaps(
        {"attn": torch.randn(4, 3), "mlp": torch.randn(4, 3)},
        ["The", " Eiffel", " Tower"],
        title="t",
        colorbar="ΔP",
    )
    html, png = plots.save(fig, tmp_path / "h")
    assert "Eiffel" in html.read_text() and png.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "plotly.min.js").exists()  # the page opens offline


@pytest.mark.slow
@pytest.mark.integration
def test_trace_script_writes_figures_and_numbers(tmp_path, tiny_dir, tiny, capsys):
    from tests.conftest import run_analysis

    out = tmp_path / "trace"
    argv = [
        "--model",
        tiny_dir,
        "--limit",
        "2",
        "--trace-cases",
        "1",
        "--kinds",
        "attn",
        "--prompts",
        "2",
        "--out",
        out,
    ]
    stdout, _ = run_analysis("trace", argv, capsys)
    assert "attention patching helps most in layers" in stdout
    result = json.loads((out / "trace.json").read_text())
    assert set(result["correlations"]) == {"DNS", "RS"}
    assert (
        str(tmp_path) not in (out / "trace.json").read_text() and "commit" in result["config"]["provenance"]
    )
    kl = result["correlations"]["DNS"]["kl_drift"]
    assert kl["cases"] <= kl["n"] and {"rho_cases", "p_cases", "ci_cases"} <= set(kl)  # over cases too
    effect = torch.tensor(result["substitution"]["DNS"]["attn"][0]["effect"])
    assert effect.shape[0] == tiny.cfg.n_layers and effect.abs().max() > 0  # the edited attention moves P
    for stem in [
        "fig3_substitution_dns_p_true",
        "fig3_substitution_rs_p_edit",
        "fig4_drift_vs_p_edit",
        "fig5_attention_patching_dns",
        "fig10_score_patching_rs",
        "table2",
        "table4",
    ]:
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.html").exists()

    # A rerun reuses each finished case's saved results instead of editing again: mark one and look for it.
    from drift.store import load_object, save_object

    saved = sorted(out.glob(".partial-*/*.pt"))
    assert len(saved) == 2
    for path in saved:  # one file per case, named by its id
        res = load_object(path)
        res["drifts"]["DNS"][0][1].p_edit = 0.123456
        save_object(path, res)
    run_analysis("trace", argv, capsys)
    rows = json.loads((out / "trace.json").read_text())["drift_rows"]["DNS"]
    assert rows[0]["p_edit"] == 0.123456

    # --drift-layers sums the drift over the layers it names; each row keeps its KL per layer
    stdout, _ = run_analysis("trace", argv + ["--drift-layers", "1,1"], capsys)
    again = json.loads((out / "trace.json").read_text())
    assert again["significant_layers"] == [1, 1] and "drift summed over layers 1-1" in stdout
    for row in again["drift_rows"]["DNS"]:
        assert len(row["kl_per_layer"]) == tiny.cfg.n_layers
        assert row["kl_drift"] == pytest.approx(row["kl_per_layer"][1], rel=1e-5)


def test_the_best_attention_window_is_a_whole_window():
    """The patch window chosen for the drift layers has all k layers: a clipped window at the top
    can raise P(o_true) more, but it is not the paper's k consecutive layers."""
    from types import SimpleNamespace

    from tests.conftest import load_analysis

    trace = load_analysis("trace")
    gain = torch.tensor([0.1, 0.3, 0.2, 0.2, 0.9])  # start 4 is a clipped window of a 5-layer model
    scan = SimpleNamespace(
        probs=torch.stack([gain, torch.zeros(5)], 1), edited=torch.zeros(2), vanilla=torch.ones(2)
    )
    assert trace.best_window({"DNS": [scan]})[0] == 4
    assert trace.best_window({"DNS": [scan]}, full=5 - 3 + 1)[0] == 1  # k = 3: starts 0, 1, 2


def test_bad_drift_layers_are_refused_before_any_edit(tiny_dir, tmp_path, capsys):
    from tests.conftest import load_analysis, run_analysis

    trace = load_analysis("trace")
    assert trace._span("21,26") == (21, 26)
    for bad in ("5", "26,21", "a,b"):
        with pytest.raises(SystemExit):  # argparse: a usage error naming the option
            trace.parse(["--drift-layers", bad])
        assert "--drift-layers" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="layer 7 is past the model's last, 1"):
        run_analysis("trace", ["--model", tiny_dir, "--drift-layers", "0,7", "--out", tmp_path], capsys)
    assert not list(tmp_path.glob(".partial-*"))  # nothing was edited or saved
