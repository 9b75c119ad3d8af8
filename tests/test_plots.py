"""The figures' layout: tables sized to their content, reference levels told apart, plain tick labels."""

import pytest
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


# ---- issue 45, item 7: titles that fit, tables without nan, one window convention ----------------
FIG10_TITLE = (
    "Edited model with the vanilla score from the last token to one token, DNS "
    "(window 10, 1 case(s), tokens grouped)"
)


def test_a_long_title_is_wrapped_to_the_figure_width_with_room_above(tmp_path):
    fig = plots.curves([0, 1], {"a": [0.1, 0.2]}, title=FIG10_TITLE, x_title="x", y_title="y")
    plots.save(fig, tmp_path / "f")  # 1000 px wide
    lines = fig.layout.title.text.split("<br>")
    assert len(lines) == 2 and " ".join(lines) == FIG10_TITLE
    assert all(len(line) * plots._TITLE_CHAR_W <= 0.95 * 1000 - 40 for line in lines)
    assert fig.layout.margin.t >= 100 + plots._TITLE_LINE_PX  # the second line has its own room
    short = plots.curves([0, 1], {"a": [0.1, 0.2]}, title="short", x_title="x", y_title="y")
    plots.save(short, tmp_path / "s")
    assert short.layout.title.text == "short" and short.layout.margin.t is None  # plotly's default
    again = plots.fit_title(fig, 1000)  # saving twice wraps once
    assert again.layout.title.text.split("<br>") == lines


def test_a_long_title_ends_inside_its_figure_in_a_browser(tmp_path):
    from tests.browser import open_page

    fig = plots.curves([0, 1], {"a": [0.1, 0.2]}, title=FIG10_TITLE, x_title="x", y_title="y")
    # plotly asks for Open Sans, then Verdana, Arial, any sans-serif: where the first two are missing
    # the title is drawn in a font as wide as DejaVu Sans, in which the unwrapped title ran 18 px
    # past the figure's right edge ("... tokens groupe")
    fig.update_layout(font_family="DejaVu Sans")
    html, _ = plots.save(fig, tmp_path / "fig10")
    probe, log = open_page(html, tmp_path)
    assert probe["errors"] == [] and len(probe["figures"]) == 1
    f = probe["figures"][0]
    assert f["title_right"] is not None and f["left"] <= f["title_left"] < f["title_right"] <= f["right"] - 10


def test_table_cells_read_na_for_undefined_numbers_and_column_names_are_unique():
    fig = plots.table(["a", "b"], [[1.5, float("nan")], [None, "x"]], title="t")
    assert list(fig.data[0].cells.values[0]) == ["1.5", "n/a"] and list(fig.data[0].cells.values[1]) == [
        "n/a",
        "x",
    ]
    with pytest.raises(ValueError, match=r"column names repeat: \['p'\]"):
        plots.table(["ρ", "p", "n", "p"], [], title="t")


def test_table2_of_a_case_without_a_per_case_correlation_shows_no_nan():
    from drift.cli.commands.trace import CORRELATION_HEADER, TABLE2, correlation_table
    from drift.interp.correlate import Correlation, pearson

    rows = [{"case_id": c, "p_edit": y, **dict.fromkeys(TABLE2, x)} for c, x, y in
            [(1, 0.1, 0.2), (1, 0.3, 0.3), (2, 0.5, 0.6)]]  # fmt: skip
    corr = {
        "DNS": pearson(rows, TABLE2),
        "RS": {f: Correlation(float("nan"), float("nan"), 2, 1) for f in TABLE2},
    }
    assert all(c.rho_cases != c.rho_cases for c in corr["DNS"].values())  # 2 cases: undefined
    header, body = correlation_table(corr, TABLE2, ["DNS", "RS"])
    assert header == CORRELATION_HEADER and len(set(header)) == len(header)
    cells = [str(v) for row in body for v in row]
    assert not any("nan" in c.lower() for c in cells)
    assert body[0][5:8] == ["n/a", "n/a", "n/a"] and body[0][2] == "0.961"
    assert body[3][2:4] == ["n/a", "n/a"]  # RS: undefined over prompts too
    fig = plots.table(header, body, title="Table 2")
    assert not any("nan" in str(v).lower() for col in fig.data[0].cells.values for v in col)


def test_window_patching_draws_whole_windows_at_their_centre_layer():
    probs = torch.rand(30, 2)  # a patch of 10 layers from each of 30 start layers
    fig = plots.window_patching(probs, 10, title="t", references={"edited P(o_true)": 0.2})
    line = fig.data[0]
    assert list(line.x) == list(range(5, 26))  # starts 0..20 (whole windows), each at start + 5
    assert list(line.y) == pytest.approx(probs[:21, 0].tolist())
    assert "centre layer" in fig.layout.xaxis.title.text and "c−5 … c+4" in fig.layout.xaxis.title.text
    ref = next(t for t in fig.data if t.name == "edited P(o_true)")
    assert list(ref.x) == [5, 25]
