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


def test_the_command_and_the_script_draw_fig7_with_one_function(tmp_path):
    """The `sadr` command's runs (sadr.Run) and analyses/fig7.py's points (tables.Point) of the same
    results files give the same figure, drawn by drift.cli.commands.sadr.fig7."""
    from drift.cli.commands import sadr as command

    finished(tmp_path, "rome_s20", {}, scored(70, 50, 1, 6))
    finished(tmp_path, "g1", sadr(0.04, 20), scored(80, 40, 3, 6))
    finished(tmp_path, "kl", {"hp": {"kl_factor": "4.0"}}, scored(60, 40, 1.5, 6))
    finished(tmp_path, "s40", {"steps": 40}, scored(60, 40, 1.5, 6))
    runs = [command.Run.read(p) for p in sorted(tmp_path.glob("*.json"))]
    assert command.fig7(runs).to_json() == fig7.figure(fig7.load_points(tmp_path)).to_json()
    assert command.fig7(runs).layout.width == 1200  # saved as wide wherever it is drawn
    assert "(4 cases a point)" in command.fig7(runs, split="").layout.title.text


def test_a_knob_set_at_the_presets_value_is_one_point_of_its_line(tmp_path):
    """The `sadr` command asks for ROME at steps 20 and lr 0.5 as knob settings, which are ROME's
    preset: each line holds one point per setting, the preset run (the plainest) where two match."""
    from drift.cli.commands import sadr as command

    finished(tmp_path, "base", {}, scored(70, 50, 1, 6))
    finished(tmp_path, "s20", {"steps": 20}, scored(71, 50, 1, 6))
    finished(tmp_path, "s2", {"steps": 2}, scored(10, 10, 9, 9))
    finished(tmp_path, "lr05", {"hp": {"lr": 0.5}}, scored(72, 50, 1, 6))
    finished(tmp_path, "lr01", {"hp": {"lr": 0.1}}, scored(30, 20, 5, 8))
    finished(tmp_path, "g", sadr(0.001, 2), scored(9, 9, 9.5, 9))
    runs = [command.Run.read(p) for p in sorted(tmp_path.glob("*.json"))]
    got = {k: [(v, p.name) for v, p in row] for k, row in command.fig7_lines(runs).items()}
    assert got == {
        "SADR γ, 2 steps": [(0.0, "s2"), (0.001, "g")],
        "ROME lr": [(0.1, "lr01"), (0.5, "base")],
        "ROME steps": [(2.0, "s2"), (20.0, "base")],
    }
