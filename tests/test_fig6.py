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


def test_the_command_and_the_script_draw_fig6_with_one_function(tmp_path):
    """`python -m drift sadr` reads its runs' results files (sadr.Run) and analyses/fig6.py the
    grid's (tables.Point): the same files give the same figure, from drift.cli.commands.sadr.fig6."""
    from drift.cli.commands import sadr as command

    finished(tmp_path, "rome_s20", {}, rows(es=100, rs=10))
    finished(tmp_path, "sel", sadr(0.04, 20), rows(es=100, rs=30))
    finished(tmp_path, "all", sadr(0.04, 20) | {"sadr_heads": "all"}, rows(es=50, rs=30))
    runs = [command.Run.read(p) for p in sorted(tmp_path.glob("*.json"))]
    assert command.fig6(runs).to_json() == fig6.figure(fig6.load_points(tmp_path)).to_json()
    assert fig6.figure.__doc__ and "drift.cli.commands.sadr.fig6" in fig6.figure.__doc__


def test_fig6_starts_its_lines_from_the_editor_alone_at_the_sadr_steps(tmp_path):
    """Another editor, another step count (the `sadr` command's --sadr-steps): the lines start from
    that editor alone at those steps, the plainest run where two are the same (preset = steps 20)."""
    from drift.cli.commands import sadr as command

    finished(tmp_path, "memit_s80", {"editor": "memit", "steps": 80}, rows(es=90))
    finished(tmp_path, "memit", {"editor": "memit"}, rows(es=95))  # MEMIT's preset: 20 steps
    finished(tmp_path, "memit_s20", {"editor": "memit", "steps": 20}, rows(es=96))  # the same, asked apart
    finished(tmp_path, "g", sadr(0.01, 80) | {"editor": "memit"}, rows(es=70))
    finished(tmp_path, "g20", sadr(0.01, 20) | {"editor": "memit"}, rows(es=60))
    finished(tmp_path, "rome", sadr(0.01, 80), rows(es=1))  # another editor: on no line
    runs = [command.Run.read(p) for p in sorted(tmp_path.glob("*.json"))]
    at80 = {k: [(g, p.name) for g, p in row] for k, row in command.fig6_lines(runs, "memit", 80).items()}
    assert at80 == {"selective": [(0.0, "memit_s80"), (0.01, "g")]}
    at20 = {k: [(g, p.name) for g, p in row] for k, row in command.fig6_lines(runs, "memit", 20).items()}
    assert at20 == {"selective": [(0.0, "memit"), (0.01, "g20")]}
    es = next(t for t in command.fig6(runs, "memit", 80).data if t.name == "ES, selective heads")
    assert list(es.x) == [0.0, 0.01] and list(es.y) == [90.0, 70.0]
