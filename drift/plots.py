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
    else 1000 x 500."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    width = width or fig.layout.width or 1000
    height = height or fig.layout.height or 500
    fig.update_layout(width=width, height=height, template="plotly_white")
    html, png = stem.with_suffix(".html"), stem.with_suffix(".png")
    fig.write_html(html, include_plotlyjs="directory")
    fig.write_image(png, width=width, height=height, scale=1)
    return [html, png]


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
    titles = [f"{n}: ρ = {panels[n][2]:.2f}, p = {panels[n][3]:.1e}" for n in names]
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
_CHAR_PX, _TITLE_CHAR_PX, _CELL_PAD = 7.5, 9.5, 16
_HEADER_PX, _ROW_PX = 30, 26
_MARGIN = {"l": 20, "r": 20, "t": 60, "b": 20}


def table(header: Sequence[str], rows: Sequence[Sequence], *, title: str) -> go.Figure:
    """A table (Table 2, Table 4) as a figure, sized to its content: each column as wide as its
    longest text (header included), one fixed-height line per row, so :func:`save` writes every
    row and cell in full (it takes the figure's own width and height)."""
    cols = [[str(r[i]) for r in rows] for i in range(len(header))]
    chars = [max([len(str(h))] + [len(v) for v in col]) for h, col in zip(header, cols, strict=True)]
    col_px = [int(n * _CHAR_PX) + _CELL_PAD for n in chars]
    width = max(sum(col_px), int(len(title) * _TITLE_CHAR_PX)) + _MARGIN["l"] + _MARGIN["r"]
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
    return fig


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
