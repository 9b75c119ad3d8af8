"""Every figure drift draws, from plain result objects; the only module that imports plotly.

Each function returns a ``plotly.graph_objects.Figure``; :func:`save` writes it as interactive
HTML (plotly.js written once beside it, so the pages open offline) and as a static PNG.

Example:
    >>> import torch
    >>> fig = heatmaps({"attn": torch.zeros(3, 2)}, ["a", "b"], title="t", colorbar="ΔP")
    >>> len(fig.data)
    1
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots
from torch import Tensor


def save(
    fig: go.Figure, stem: Path | str, *, width: int | None = None, height: int | None = None
) -> list[Path]:
    """Write ``stem.html`` and ``stem.png``; returns both paths. The size is ``width`` x ``height``
    where given, else the figure's own layout size (a :func:`table` sizes itself to its content),
    else 1000 x 500. A title too long for the width is wrapped (:func:`fit_title`)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    width = width or fig.layout.width or 1000
    height = height or fig.layout.height or 500
    fig.update_layout(width=width, height=height, template="plotly_white")
    fit_title(fig, width)
    html, png = stem.with_suffix(".html"), stem.with_suffix(".png")
    fig.write_html(html, include_plotlyjs="directory")
    fig.write_image(png, width=width, height=height, scale=1)
    return [html, png]


# a title's geometry: plotly's default title font (17 px) and a generous width per character of it
# (capitals, Greek and digits included), in pixels; the template starts a title at 5% of the width
_TITLE_FONT_PX, _TITLE_CHAR_W, _TITLE_LINE_PX = 17, 10.0, 22


def title_lines(text: str, width: int) -> list[str]:
    """``text`` broken at spaces into lines that each fit ``width`` pixels at the title's font,
    from where the title starts to 40 px short of the right edge (a word longer than a line
    stands alone).

    >>> title_lines("Edited model with the vanilla score, DNS (window 10, 1 case, tokens grouped)", 500)
    ['Edited model with the vanilla score, DNS', '(window 10, 1 case, tokens grouped)']
    """
    per_line = max(10, int((0.95 * width - 40) / _TITLE_CHAR_W))
    lines: list[str] = []
    for word in text.replace("<br>", " ").split():
        if lines and len(lines[-1]) + 1 + len(word) <= per_line:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def fit_title(fig: go.Figure, width: int) -> go.Figure:
    """Wrap ``fig``'s title to ``width`` pixels (lines joined by ``<br>``) and, for a title of
    several lines, make the top margin tall enough for them, so no title runs past the figure's
    right edge or into the plot. Idempotent.

    >>> fig = fit_title(go.Figure(layout={"title": "a long title " * 20}), 600)
    >>> fig.layout.title.text.count("<br>"), fig.layout.margin.t
    (4, 188)
    """
    text = fig.layout.title.text
    if not text:
        return fig
    lines = title_lines(text, width)
    fig.update_layout(title={"text": "<br>".join(lines), "font": {"size": _TITLE_FONT_PX}})
    if len(lines) > 1:  # plotly's default top margin is 100 px
        fig.update_layout(
            margin={"t": max(fig.layout.margin.t or 100, 100 + _TITLE_LINE_PX * (len(lines) - 1))}
        )
    return fig


def heatmaps(
    panels: Mapping[str, Tensor],
    tokens: Sequence[str],
    *,
    title: str,
    colorbar: str,
    layer_axis: str = "layer",
    x_title: str = "token",
) -> go.Figure:
    """One heatmap per panel, each ``[layers, tokens]``, tokens along x and layers along y
    (Fig. 3/9/10 style). A shared, zero-centred colour scale."""
    names = list(panels)
    fig = make_subplots(
        rows=1, cols=len(names), subplot_titles=names, shared_yaxes=True, horizontal_spacing=0.04
    )
    vmax = max(float(v.abs().max()) for v in panels.values()) or 1.0
    # columns sit at positions 0..n-1 and carry the labels as tick text, so repeated tokens stay
    # separate columns and each tick reads exactly the string passed in
    labels = [str(t) for t in tokens]
    columns = list(range(len(labels)))
    for c, name in enumerate(names, start=1):
        z = panels[name].float().numpy()
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=columns,
                y=list(range(z.shape[0])),
                customdata=[labels] * z.shape[0],
                zmin=-vmax,
                zmax=vmax,
                colorscale="RdBu_r",
                colorbar={"title": colorbar},
                showscale=c == len(names),
                hovertemplate=f"{x_title} %{{customdata}}<br>{layer_axis} %{{y}}<br>"
                f"{colorbar} %{{z:.4f}}<extra></extra>",
            ),
            row=1,
            col=c,
        )
        fig.update_xaxes(
            title_text=x_title,
            tickmode="array",
            tickvals=columns,
            ticktext=labels,
            tickangle=-60,
            row=1,
            col=c,
        )
    fig.update_yaxes(title_text=layer_axis, row=1, col=1)
    fig.update_layout(title=title)
    return fig


def curves(
    x: Sequence,
    lines: Mapping[str, Sequence[float]],
    *,
    title: str,
    x_title: str,
    y_title: str,
    references: Mapping[str, float] | None = None,
    log_x: bool = False,
) -> go.Figure:
    """Lines over ``x`` (Fig. 5, Fig. 6, Fig. 10), with horizontal reference levels.

    Each reference is drawn across ``x`` in the colour of the line it belongs to (see
    :func:`_owner`) and with its own dash: the first reference of a line dashed, the second dotted,
    and so on, so "edited P(x)" and "vanilla P(x)" read apart; references that match no line are
    grey. Every reference has a legend entry under its own name."""
    xs = list(x)
    fig = go.Figure()
    colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(lines)}
    for name, ys in lines.items():
        fig.add_trace(
            go.Scatter(x=xs, y=list(ys), mode="lines+markers", name=name, line={"color": colours[name]})
        )
    used: dict[str | None, int] = {}
    for name, y in (references or {}).items():
        owner = _owner(name, list(lines))
        k = used.get(owner, 0)
        used[owner] = k + 1
        fig.add_trace(
            go.Scatter(
                x=[xs[0], xs[-1]] if xs else [],
                y=[y, y],
                mode="lines",
                name=name,
                line={"color": colours.get(owner, "#7f7f7f"), "dash": _DASHES[k % len(_DASHES)], "width": 2},
                hovertemplate=f"{name}: {y:.4g}<extra></extra>",
            )
        )
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    if log_x:
        fig.update_xaxes(type="log")
    return fig


def window_patching(
    probs: Tensor,
    window: int,
    *,
    title: str,
    names: Sequence[str] = ("P(o_true)", "P(o_edit)"),
    references: Mapping[str, float] | None = None,
    y_title: str = "probability",
) -> go.Figure:
    """Fig. 5: a patch of ``window`` consecutive layers at each start layer, ``probs [starts, k]``
    (one column per line in ``names``), drawn as the paper draws it: the whole windows only, each
    at its **centre layer** (start + window // 2), the convention of the reference code's figure
    and of the centred windows of Fig. 3 and Fig. 10. The clipped windows at the top are left out.

    >>> import torch
    >>> fig = window_patching(torch.rand(30, 2), 10, title="t")
    >>> fig.data[0].x[0], fig.data[0].x[-1], len(fig.data[0].x)
    (5, 25, 21)
    """
    n_layers = len(probs)
    k = min(window, n_layers)
    full = n_layers - k + 1
    lines = {name: [float(v) for v in probs[:full, i]] for i, name in enumerate(names)}
    lo, hi = k // 2, k - 1 - k // 2
    span = f"c−{lo} … c" + (f"+{hi}" if hi else "")
    return curves(
        [first + lo for first in range(full)],
        lines,
        references=references,
        x_title=f"centre layer c of the {k} patched layers ({span}), as the paper's Fig. 5 draws them",
        y_title=y_title,
        title=title,
    )


def bars(
    groups: Sequence[str],
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    title: str,
    y_title: str,
) -> go.Figure:
    """Grouped bars, one row per panel (``{panel: {series: one value per group}}``): in each
    group (a case, say) one bar per series, coloured alike across the panels."""
    fig = make_subplots(rows=len(panels), cols=1, subplot_titles=list(panels))
    for r, lines in enumerate(panels.values(), start=1):
        for i, (name, ys) in enumerate(lines.items()):
            colour = _PALETTE[i % len(_PALETTE)]
            bar = go.Bar(x=list(groups), y=list(ys), name=name, legendgroup=name, showlegend=r == 1)
            fig.add_trace(bar.update(marker_color=colour), row=r, col=1)
        fig.update_yaxes(title_text=y_title, row=r, col=1)
    fig.update_layout(title=title, barmode="group")
    return fig


_PALETTE = (
    "#636efa",
    "#ef553b",
    "#00cc96",
    "#ab63fa",
    "#ffa15a",
    "#19d3f3",
    "#ff6692",
    "#b6e880",
    "#ff97ff",
    "#fecb52",
)
_DASHES = ("dash", "dot", "dashdot", "longdash", "longdashdot")


def _owner(reference: str, lines: Sequence[str]) -> str | None:
    """The line a reference level belongs to: the longest line name contained in the reference's
    name ("edited P(o_edit)" -> "P(o_edit)"), else the line sharing the longest run of characters
    with it, at least three ("edited P(right)" -> "P(right answer)"); None when nothing matches."""
    inside = [n for n in lines if n and n in reference]
    if inside:
        return max(inside, key=len)
    best, size = None, 2
    for n in lines:
        run = _common_run(reference, n)
        if run > size:
            best, size = n, run
    return best


def _common_run(a: str, b: str) -> int:
    """Length of the longest substring common to ``a`` and ``b``."""
    best, prev = 0, [0] * (len(b) + 1)
    for ca in a:
        cur = [0] * (len(b) + 1)
        for j, cb in enumerate(b, start=1):
            if ca == cb:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def paths(
    panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[str]]]],
    *,
    title: str,
    x_titles: Mapping[str, str],
    y_title: str,
) -> go.Figure:
    """Trade-off paths (Fig. 7): per panel, one line per knob through its settings ``(x, y, labels)``."""
    names = list(panels)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names)
    colours = {}
    for c, panel in enumerate(names, start=1):
        for knob, (xs, ys, labels) in panels[panel].items():
            colour = colours.setdefault(knob, _PALETTE[len(colours) % len(_PALETTE)])
            fig.add_trace(
                go.Scatter(
                    x=list(xs),
                    y=list(ys),
                    text=list(labels),
                    mode="lines+markers+text",
                    textposition="top center",
                    name=knob,
                    legendgroup=knob,
                    showlegend=c == 1,
                    line={"color": colour},
                ),
                row=1,
                col=c,
            )
        fig.update_xaxes(title_text=x_titles[panel], row=1, col=c)
        fig.update_yaxes(title_text=y_title, row=1, col=c)
    fig.update_layout(title=title)
    return fig


def scatter(
    panels: Mapping[str, tuple[Sequence[float], Sequence[float], float, float]],
    *,
    title: str,
    x_title: str,
    y_title: str,
) -> go.Figure:
    """One scatter per panel ``(x, y, rho, p)`` with ρ and p in the subplot title (Fig. 4)."""
    names = list(panels)
    titles = [f"{n}: ρ = {_number(panels[n][2], '.2f')}, p = {_number(panels[n][3], '.1e')}" for n in names]
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=titles)
    for c, n in enumerate(names, start=1):
        x, y, _, _ = panels[n]
        fig.add_trace(
            go.Scatter(x=list(x), y=list(y), mode="markers", name=n, marker={"size": 6, "opacity": 0.7}),
            row=1,
            col=c,
        )
        fig.update_xaxes(title_text=x_title, row=1, col=c)
        fig.update_yaxes(title_text=y_title, row=1, col=c)
    fig.update_layout(title=title, showlegend=False)
    return fig


def calibration(bins: Sequence[Mapping[str, float]], *, title: str) -> go.Figure:
    """A reliability diagram: each bin's mean predicted probability against its observed rate
    (``{"predicted", "observed", "n"}`` per bin, marker area by ``n``), with the diagonal."""
    x = [b["predicted"] for b in bins]
    y = [b["observed"] for b in bins]
    n = [b["n"] for b in bins]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="calibrated", line={"dash": "dot"}))
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers+lines",
            name="bins",
            text=[f"n = {k}" for k in n],
            marker={"size": [8 + 4 * k**0.5 for k in n]},
        )
    )
    fig.update_xaxes(title_text="predicted P(failure), bin mean", range=[-0.05, 1.05])
    fig.update_yaxes(title_text="observed failure rate", range=[-0.05, 1.05])
    fig.update_layout(title=title)
    return fig


# table geometry, in pixels: a generous width per character of 12 px text (Greek and digits
# included), the padding around each cell's text, the row heights, and the margins
_CHAR_PX, _CELL_PAD = 7.5, 16
_HEADER_PX, _ROW_PX = 30, 26
_MARGIN = {"l": 20, "r": 20, "t": 60, "b": 20}


def table(header: Sequence[str], rows: Sequence[Sequence], *, title: str) -> go.Figure:
    """A table (Table 2, Table 4) as a figure, sized to its content: each column as wide as its
    longest text (header included), one fixed-height line per row, so :func:`save` writes every
    row and cell in full (it takes the figure's own width and height). Column names must be
    unique; an undefined number (NaN, None) reads ``n/a``.

    >>> fig = table(["factor", "ρ"], [["kl", 0.5], ["gain", float("nan")]], title="t")
    >>> fig.data[0].cells.values[1]
    ['0.5', 'n/a']
    """
    repeated = sorted({h for h in header if list(header).count(h) > 1})
    if repeated:
        raise ValueError(f"table: column names repeat: {repeated}")
    cols = [[_cell(r[i]) for r in rows] for i in range(len(header))]
    chars = [max([len(str(h))] + [len(v) for v in col]) for h, col in zip(header, cols, strict=True)]
    col_px = [int(n * _CHAR_PX) + _CELL_PAD for n in chars]
    width = max(sum(col_px), 320) + _MARGIN["l"] + _MARGIN["r"]  # a long title wraps
    height = _HEADER_PX + _ROW_PX * len(rows) + _MARGIN["t"] + _MARGIN["b"] + 10
    fig = go.Figure(
        go.Table(
            columnwidth=col_px,
            header={
                "values": list(header),
                "align": "left",
                "height": _HEADER_PX,
                "font": {"size": 12},
                "fill_color": "#e8ecf5",
            },
            cells={"values": cols, "align": "left", "height": _ROW_PX, "font": {"size": 12}},
        )
    )
    fig.update_layout(title=title, width=width, height=height, margin=_MARGIN)
    fit_title(fig, width)
    fig.update_layout(height=height + fig.layout.margin.t - _MARGIN["t"])
    return fig


def _number(value, spec: str) -> str:
    """``value`` formatted by ``spec``, or ``n/a`` when undefined (NaN, None)."""
    return _cell(value) if _cell(value) == "n/a" else format(value, spec)


def _cell(value) -> str:
    """A table cell's text: ``n/a`` for an undefined number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return str(value)


def matrices(
    panels: Mapping[str, Tensor],
    labels: Sequence[str],
    *,
    title: str,
    colorbar: str,
    zmin: float = -1.0,
    zmax: float = 1.0,
) -> go.Figure:
    """Square matrices side by side, e.g. pairwise cosine similarity of updates (AdaPLE Fig. 3)."""
    names = list(panels)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.05)
    for c, name in enumerate(names, start=1):
        fig.add_trace(
            go.Heatmap(
                z=panels[name].float().numpy(),
                x=list(labels),
                y=list(labels),
                zmin=zmin,
                zmax=zmax,
                colorscale="RdBu_r",
                colorbar={"title": colorbar},
                showscale=c == len(names),
            ),
            row=1,
            col=c,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=c)
    fig.update_layout(title=title)
    return fig


def head_attention(
    tokens: Sequence[str],
    heads: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    subject: Sequence[int],
    title: str,
    edited: str = "edited",
) -> go.Figure:
    """The last token's attention of some heads, the vanilla model's and the edited one's side by
    side: ``heads`` maps a head's label to its two rows ``(vanilla [tokens], edited [tokens])``;
    one row per head in each panel, one column per token, the ``subject`` positions framed. One
    colour scale for both panels, so a head pulled toward the subject reads as a darker cell on
    the right.

    >>> fig = head_attention(["The", " tower", " is"], {"L3 H1": ([0.2, 0.3, 0.5], [0.1, 0.8, 0.1])},
    ...                      subject=[1], title="t")
    >>> [t.name for t in fig.data], len(fig.layout.shapes)
    (['vanilla', 'edited'], 2)
    """
    names = list(heads)
    labels = [str(t) for t in tokens]
    columns = list(range(len(labels)))
    rows = {"vanilla": [list(map(float, heads[n][0])) for n in names]}
    rows[edited] = [list(map(float, heads[n][1])) for n in names]
    zmax = max((max(r) for z in rows.values() for r in z), default=1.0) or 1.0
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(rows), shared_yaxes=True, horizontal_spacing=0.03)
    for c, (panel, z) in enumerate(rows.items(), start=1):
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=columns,
                y=names,
                customdata=[labels] * len(names),
                zmin=0,
                zmax=zmax,
                colorscale="Blues",
                name=panel,
                colorbar={"title": "attention"},
                showscale=c == 2,
                hovertemplate=f"{panel}<br>%{{y}}<br>token %{{customdata}}<br>"
                "attention %{z:.3f}<extra></extra>",
            ),
            row=1,
            col=c,
        )
        fig.update_xaxes(
            tickmode="array",
            tickvals=columns,
            ticktext=labels,
            tickangle=-60,
            title_text="token",
            row=1,
            col=c,
        )
        if subject:  # frame the subject's tokens
            fig.add_shape(
                type="rect",
                x0=min(subject) - 0.5,
                x1=max(subject) + 0.5,
                y0=-0.5,
                y1=len(names) - 0.5,
                line={"color": "#d62728", "width": 2},
                row=1,
                col=c,
            )
    fig.update_yaxes(title_text="head (layer, head)", autorange="reversed", row=1, col=1)
    fig.update_layout(title=title, height=max(320, 160 + 40 * len(names)))
    return fig


def page(title: str, sections: Sequence[tuple[str, Sequence[go.Figure | str]]]) -> str:
    """One self-contained HTML page that opens offline: plotly.js inlined once in its head, then
    each section's heading and its parts in order, an HTML string as it is and a figure as an
    interactive plot (a ``div`` of class ``drift-figure``, 1000 px wide unless the figure sets its
    width, scrolled sideways in a narrower window; its title wrapped to that width).

    >>> html = page("t", [("one", ["<p>hi</p>", go.Figure()])])
    >>> html.count('class="drift-figure"'), "<script" in html[: html.index("<body>")]
    (1, True)
    """
    import html as html_

    from plotly.offline import get_plotlyjs

    body, n = [], 0
    for heading, parts in sections:
        body.append(f"<h2>{html_.escape(heading)}</h2>")
        for part in parts:
            if isinstance(part, str):
                body.append(part)
                continue
            n += 1
            width = part.layout.width or 1000  # fixed, so that its title, wrapped to it, fits
            part.update_layout(template="plotly_white", width=width)
            fit_title(part, width)
            div = part.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{n}")
            body.append(f'<div class="drift-figure">{div}</div>')
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html_.escape(title)}</title>",
            f"<style>{_PAGE_CSS}</style>",
            f'<script type="text/javascript">{get_plotlyjs()}</script>',
            "</head><body>",
            f"<h1>{html_.escape(title)}</h1>",
            *body,
            "</body></html>",
        ]
    )


_PAGE_CSS = " ".join(
    [
        "body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1100px;",
        "margin:1.5em auto;padding:0 1em;color:#222}",
        "h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}",
        "table.metrics{border-collapse:collapse;font-size:.92em}",
        "table.metrics td,table.metrics th{padding:.2em .7em;border-bottom:1px solid #eee;text-align:right}",
        "table.metrics td:first-child,table.metrics th:first-child{text-align:left}",
        "dl.case dt{font-weight:600;float:left;width:9em;clear:left} dl.case dd{margin-left:9.5em}",
        ".note{color:#666;font-size:.9em} .drift-figure{overflow-x:auto}",
    ]
)
