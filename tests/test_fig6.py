"""analyses/fig6.py: selective vs all heads across γ from the validation grid's results files."""

from __future__ import annotations

import math

from tests.conftest import load_analysis
from tests.test_tables import finished, rows, sadr

fig6 = load_analysis("fig6")


def test_selective_and_all_heads_are_two_lines_from_rome_alone(tmp_path):
    finished(tmp_path, "rome_s20", {}, rows(es=100, rs=10))
    finished(tmp_path, "sel", sadr(0.04, 20), rows(es=100, rs=30))
    finished(tmp_path, "all", sadr(0.04, 20) | {"sadr_heads": "all"}, rows(es=50, rs=30))
    finished(tmp_path, "all2", sadr(0.01, 20) | {"sadr_heads": "all"}, rows(es=75, rs=20))
    finished(tmp_path, "s80", sadr(0.04, 80), rows(rs=90))  # other steps: on neither line
    got = {k: [(g, p.name) for g, p in row] for k, row in fig6.lines(fig6.load_points(tmp_path)).items()}
    assert got == {
        "selective": [(0.0, "rome_s20"), (0.04, "sel")],
        "all": [(0.0, "rome_s20"), (0.01, "all2"), (0.04, "all")],
    }
    assert "| all | 0.01 | 4 | 75.0 |" in fig6.table(fig6.load_points(tmp_path))
    fig = fig6.figure(fig6.load_points(tmp_path))
    es_sel = next(t for t in fig.data if t.name == "ES, selective heads")
    assert list(fig.data[0].x) == [0.0, 0.01, 0.04]
    assert es_sel.y[0] == 100.0 and math.isnan(es_sel.y[1]) and es_sel.y[2] == 100.0
