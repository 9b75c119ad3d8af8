"""analyses/fig7.py: the trade-off lines of Fig. 7 from the validation grid's results files."""

from __future__ import annotations

from tests.conftest import load_analysis
from tests.test_tables import finished, sadr

fig7 = load_analysis("fig7")


def scored(em: float, pm: float, rm: float, dnm: float) -> list[dict]:
    m = {"EM": em, "PM": pm, "RM": rm, "DNM": dnm}
    return [{"case_id": i, "metrics": m | {f"{k}_k": 1 for k in m}} for i in ("0", "1", "2", "3")]


def test_each_knob_is_one_line_from_rome_alone(tmp_path):
    finished(tmp_path, "rome_s20", {}, scored(70, 50, 1, 6))
    finished(tmp_path, "rome_s80", {"steps": 80}, scored(90, 60, 2, 7))
    finished(tmp_path, "g1", sadr(0.04, 80), scored(80, 40, 3, 6))
    finished(tmp_path, "g2", sadr(0.01, 80), scored(85, 50, 2.5, 6))
    finished(tmp_path, "kl", {"hp": {"kl_factor": "4.0"}}, scored(60, 40, 1.5, 6))
    finished(tmp_path, "two", {"hp": {"kl_factor": "4.0", "lr": "0.2"}}, scored(1, 1, 1, 1))  # on no line
    finished(tmp_path, "memit", {"editor": "memit"}, scored(1, 1, 1, 1))  # another editor
    got = {k: [(v, p.name) for v, p in row] for k, row in fig7.lines(fig7.load_points(tmp_path)).items()}
    assert got == {
        "SADR γ, 80 steps": [(0.0, "rome_s80"), (0.01, "g2"), (0.04, "g1")],
        "ROME steps": [(20.0, "rome_s20"), (80.0, "rome_s80")],
        "ROME ω": [(0.0625, "rome_s20"), (4.0, "kl")],
    }
    text = fig7.table(fig7.load_points(tmp_path))
    assert "| SADR γ, 80 steps | 0.04 | 4 | 60.0 | 80.0 | 40.0 | 3.0 | 6.0 |" in text
    fig = fig7.figure(fig7.load_points(tmp_path))
    # two panels (RM, DNM), three lines each; y is edit success, x the panel's metric
    assert len(fig.data) == 6
    sadr_rm = next(t for t in fig.data if t.name == "SADR γ, 80 steps" and t.xaxis == "x")
    assert list(sadr_rm.x) == [2.0, 2.5, 3.0] and list(sadr_rm.y) == [75.0, 67.5, 60.0]
