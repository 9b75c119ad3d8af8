"""The figures' layout: tables sized to their content, reference levels told apart, plain tick labels."""

import torch

from drift import plots

HEADER = ["task", "factor", "ρ (prompts)", "p"]


def _rows(n, factor="max_subject_gain"):
    return [["DNS", factor, "0.123", "4.5e-03"] for _ in range(n)]


def test_table_height_grows_with_its_rows():
    short = plots.table(HEADER, _rows(2), title="t")
    tall = plots.table(HEADER, _rows(20), title="t")
    cells = tall.data[0].cells.height
    assert tall.layout.height - short.layout.height >= 18 * cells
    # every row fits: header, rows and margins within the figure's height
    m = tall.layout.margin
    assert tall.layout.height >= m.t + m.b + tall.data[0].header.height + 20 * cells


def test_table_width_fits_the_longest_cell():
    long = "a_factor_name_that_is_much_longer_than_the_others"
    fig = plots.table(HEADER, _rows(3) + [["RS", long, "0.1", "1e-3"]], title="t")
    narrow = plots.table(HEADER, _rows(4), title="t")
    widths = fig.data[0].columnwidth
    assert widths[1] == max(widths) and widths[1] >= 6 * len(long)
    m = fig.layout.margin
    assert fig.layout.width >= sum(widths) + m.l + m.r
    assert fig.layout.width > narrow.layout.width


def test_save_takes_the_table_size(tmp_path):
    fig = plots.table(HEADER, _rows(30), title="t")
    h = fig.layout.height
    plots.save(fig, tmp_path / "t")
    assert fig.layout.height == h > 500


def test_each_reference_has_its_lines_colour_a_distinct_dash_and_a_legend_entry():
    lines = {"P(o_true)": [0.1, 0.2, 0.3], "P(o_edit)": [0.8, 0.6, 0.4]}
    refs = {"edited P(o_true)": 0.1, "edited P(o_edit)": 0.8}
    refs |= {"vanilla P(o_true)": 0.5, "vanilla P(o_edit)": 0.0}
    fig = plots.curves([0, 1, 2], lines, references=refs, title="t", x_title="x", y_title="y")
    colour = {t.name: t.line.color for t in fig.data if t.name in lines}
    drawn = {t.name: t for t in fig.data if t.name in refs}
    assert set(drawn) == set(refs) and all(t.showlegend is not False for t in drawn.values())
    assert len({(t.line.color, t.line.dash) for t in drawn.values()}) == len(refs)
    for kind in ("edited", "vanilla"):
        for line in lines:
            assert drawn[f"{kind} {line}"].line.color == colour[line]
    assert drawn["edited P(o_true)"].line.dash == "dash" and drawn["vanilla P(o_true)"].line.dash == "dot"
    assert len(set(colour.values())) == 2


def test_a_reference_matches_a_line_by_its_shared_text():
    lines = {"P(right answer)": [0.1, 0.2], "P(o_edit)": [0.8, 0.6]}
    refs = {"edited P(right)": 0.1, "vanilla P(right)": 0.5}
    fig = plots.curves([0, 1], lines, references=refs, title="t", x_title="x", y_title="y")
    right = next(t for t in fig.data if t.name == "P(right answer)").line.color
    drawn = [t for t in fig.data if t.name in refs]
    assert [t.line.color for t in drawn] == [right, right]
    assert [t.line.dash for t in drawn] == ["dash", "dot"]


def test_heatmap_tick_labels_are_the_strings_passed_in():
    heads = [f"head {h}" for h in range(4)]
    fig = plots.heatmaps({"a": torch.zeros(3, 4), "b": torch.ones(3, 4)}, heads, title="t", colorbar="c")
    for axis in ("xaxis", "xaxis2"):
        assert list(fig.layout[axis].ticktext) == heads
    assert len(fig.data[0].z[0]) == 4


def test_repeated_tokens_stay_separate_columns():
    tokens = ["The", " cat", " the", " cat"]
    fig = plots.heatmaps({"a": torch.zeros(2, 4)}, tokens, title="t", colorbar="c")
    assert list(fig.layout.xaxis.ticktext) == tokens and len(set(fig.data[0].x)) == 4
