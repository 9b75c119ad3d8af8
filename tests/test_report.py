"""`drift.report` / `python -m drift report`: one self-contained HTML page per edit, opened in
headless Chromium (tests/browser.py) on the tiny model."""

from __future__ import annotations

import re

import pytest

import drift
from drift.__main__ import main
from drift.data import load_cases
from drift.editors.rome import ROMEHParams, compute_rome
from drift.editors.sadr import SADR
from tests.browser import console_errors, open_page


@pytest.fixture(scope="module")
def page(tiny, tmp_path_factory):
    """The report of the first built-in case's ROME edit and its SADR edit, on the tiny model."""
    case = load_cases("builtin")[0]
    edit = compute_rome(tiny, case, ROMEHParams(layer=0, steps=2))
    sadr = compute_rome(tiny, case, ROMEHParams(layer=0, steps=2, extra_terms=(SADR(1e-2),)))
    before = [p.detach().clone() for p in tiny.parameters()]
    path = drift.report(
        tiny,
        edit,
        case,
        sadr=sadr,
        path=tmp_path_factory.mktemp("report") / "r.html",
        labels=("ROME", "SADR"),
    )
    assert all((a == b.detach()).all() for a, b in zip(before, tiny.parameters()))  # left as it was
    return path


def test_the_page_renders_in_chromium_without_a_javascript_error_and_with_every_figure(page, tmp_path):
    probe, log = open_page(page, tmp_path)
    assert probe["errors"] == [] and console_errors(log) == []
    # per edit: the substitution heatmaps, the per-head KL map, the heads side by side
    assert probe["divs"] == 6 and len(probe["figures"]) == 6
    # substitution: one heatmap per module kind; KL: one; heads: vanilla and edited
    assert [f["traces"] for f in probe["figures"]] == [3, 1, 2] * 2
    for f in probe["figures"]:
        assert f["svg"], f  # drawn
        assert f["title_right"] is not None and f["title_right"] <= f["right"], f


def test_the_page_holds_the_case_its_metrics_and_needs_nothing_from_outside(page):
    html = page.read_text(encoding="utf-8")
    assert "Eiffel Tower" in html and "Paris → Rome" in html
    header = re.search(r'<table class="metrics"><tr>(.*?)</tr>', html).group(1)
    assert re.findall(r"<th>(.*?)</th>", header) == ["metric", "before", "after ROME", "after SADR"]
    assert re.search(r"<td>ES \(1 prompt\)</td><td>[\d.]+</td><td>[\d.]+</td><td>[\d.]+</td>", html)
    assert "nan" not in re.sub(r"<script.*?</script>", "", html, flags=re.S)
    # self-contained: plotly.js inlined once, no script, style sheet or image fetched
    assert html.count("<script") == html.count("<script type=") and not re.search(r"<script[^>]* src=", html)
    assert not re.search(r"<link\b|<img\b|<iframe\b", html)
    assert html.count('class="drift-figure"') == 6


def test_drift_report_is_the_function_even_after_its_module_is_imported():
    import drift.interp.report

    assert drift.report is drift.interp.report.report and callable(drift.report)


def test_the_report_command_writes_the_page_and_refuses_a_case_past_the_data(tiny_dir, tmp_path, capsys):
    out = tmp_path / "r.html"
    argv = ["report", "--model", tiny_dir, "--hp", "layer=0", "--steps", "1", "--kinds", "attn", "--quiet"]
    assert main(argv + ["--top", "2", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    assert html.count('class="drift-figure"') == 3 and "after ROME" in html
    with pytest.raises(ValueError, match=r"--case 500: builtin has \d+ cases"):
        main(argv + ["--case", "500", "--out", str(tmp_path / "x.html")])
    with pytest.raises(SystemExit):
        main(argv + ["--out", str(tmp_path)])  # a folder
    assert "is a folder" in capsys.readouterr().err
