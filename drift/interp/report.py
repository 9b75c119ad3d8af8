"""One HTML report per edit: :func:`report` (``drift.report`` at the top level, ``python -m drift
report`` on the command line).

The page opens offline (plotly.js inlined once, every figure interactive) and holds, for one case:

- the case (subject, prompt, o_true → o_edit) and its metrics before the edit, after it, and after
  the SADR edit when one is given (:func:`drift.evaluation.evaluate.evaluate`, generation off);
- per edit, on the case's first distracting-neighbourhood prompt (the relation prompt, else the
  rewrite prompt, when it has none): the contaminating substitution, the unedited model with the
  edited model's module outputs at one token (:func:`drift.interp.tracing.contaminating_substitution`,
  as Fig. 3), and the heads that drift most, with the vanilla and the edited attention of the
  last token over the prompt's tokens side by side, the subject's tokens framed
  (:func:`drift.interp.attention_drift.measure`).

The module is ``drift.interp.report`` so that ``drift.report`` stays the function.

Example (the tiny model; on it the numbers mean nothing):
    >>> from drift.editors.rome import ROMEHParams, compute_rome
    >>> edit = compute_rome(model, case, ROMEHParams(layer=0, steps=2))
    >>> import tempfile, pathlib
    >>> out = report(model, edit, case, path=pathlib.Path(tempfile.mkdtemp()) / "r.html", kinds=("attn",))
    >>> html = out.read_text(encoding="utf-8")
    >>> html.count('class="drift-figure"'), "Eiffel Tower" in html
    (3, True)
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from drift.data import EditCase
from drift.editors.base import Edit
from drift.model.adapter import Model
from drift.util import progress

# the metrics shown, in this order (those the case has prompts for)
METRICS = ("ES", "EM", "PS", "PM", "NS", "NM", "RS", "RM", "DNS", "DNM", "SAS", "SAM", "RES", "REM", "AvgS")


def traced_prompt(model: Model, case: EditCase):
    """The prompt the report traces: the case's first distracting-neighbourhood prompt, else its
    first relation prompt, else the rewrite prompt answered with o_true."""
    from drift.interp import tracing

    if case.distracting:
        return tracing.distracting_prompt(model, case)
    if case.relation:
        return tracing.relation_prompt(model, case)
    return tracing.prepare(model, case, case.prompt, case.o_true)


def metrics(model: Model, case: EditCase, edit: Edit | None, scoring: str = "mean") -> dict:
    """The case's metrics on the model as it is (``edit=None``) or with ``edit`` applied, through
    :func:`drift.evaluation.evaluate.evaluate` (no text generated); with an edit also ``"edit"``, its size."""
    from drift.evaluation.evaluate import evaluate
    from drift.evaluation.metrics import summarise
    from drift.evaluation.spec import EvalSpec

    editor = None if edit is None else (lambda m, c: edit.applied(m))
    row = evaluate(model, [case], editor, EvalSpec(fluency=False, scoring=scoring), progress=False)[0]
    out = dict(row["metrics"])
    avg = summarise([out]).get("AvgS")
    if avg is not None:
        out["AvgS"] = avg
    if "edit" in row:
        out["edit"] = row["edit"]
    return out


def report(
    model: Model,
    edit: Edit,
    case: EditCase,
    *,
    sadr: Edit | None = None,
    path: str | Path | None = None,
    labels: tuple[str, str] = ("edit", "edit + SADR"),
    kinds: Sequence[str] = ("mlp", "attn", "layer"),
    window: int = 6,
    top: int = 6,
    scoring: str = "mean",
    title: str | None = None,
    verbose: bool | None = None,
) -> Path:
    """Write the report of ``edit`` (computed, not applied; e.g. :func:`drift.edit`) for ``case``
    to ``path`` (default ``report-CASEID.html``) and return the path (module docstring).

    ``sadr``: the same case's SADR edit (``drift.edit(..., extra_terms=(SADR(γ),))``), reported
    beside the plain one; ``labels`` name the two. ``kinds``: the module kinds substituted
    (``"mlp"``, ``"attn"``, ``"layer"``), each over a ``window`` of layers. ``top``: how many
    heads to show, those of largest KL drift. ``verbose``: a progress bar (default: as
    :mod:`drift.util.progress` says). The model is left as it was."""
    from drift import plots
    from drift.interp import tracing
    from drift.interp.attention_drift import measure

    path = Path(path if path is not None else f"report-{case.case_id}.html")
    edits = [(labels[0], edit)] + ([(labels[1], sadr)] if sadr is not None else [])
    steps = 1 + len(edits) * (2 + len(kinds))
    from tqdm.auto import tqdm

    shown = progress.enabled() if verbose is None else verbose
    # one bar for the report; the calls under it stay quiet
    with progress.verbose(False), tqdm(total=steps, desc="report", unit="step", disable=not shown) as bar:
        p = traced_prompt(model, case)
        before = metrics(model, case, None, scoring)
        bar.update()
        after = {}
        sections = []
        for name, e in edits:
            after[name] = metrics(model, case, e, scoring)
            bar.update()
            panels = {}
            for kind in kinds:
                scan = tracing.contaminating_substitution(model, e, p, kind, window)
                panels[kind] = scan.effect[..., 0]  # [layers, tokens]: ΔP(right answer)
                bar.update()
            substitution = plots.heatmaps(
                panels,
                p.labels,
                colorbar="ΔP(right)",
                layer_axis=f"centre layer of the {window} substituted layers",
                title=f"Contaminating substitution ({name}): the unedited model with the edited "
                f"module outputs at one token, effect on P({p.answer.strip()})",
            )
            substitution.update_layout(height=520)
            d = measure(model, e, p, case.o_edit, scoring)
            bar.update()
            sections.append((f"Where the {name} enters: contaminating substitution", [substitution]))
            sections.append((f"The heads that drift most ({name})", _drift_parts(d, p, top, name, plots)))
    page = plots.page(
        title or f"{case.subject}: {case.o_true} → {case.o_edit}",
        [("The case and its metrics", [_case_html(case, p, model), _metrics_html(before, after)])] + sections,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _drift_parts(d, p, top: int, name: str, plots) -> list:
    """The per-head KL map and the side-by-side attention of the ``top`` heads of largest KL."""
    L, H = d.kl.shape
    k = min(top, L * H)
    order = d.kl.flatten().topk(k).indices.tolist()
    heads = {}
    for i in order:
        l, h = divmod(i, H)
        heads[f"L{l} H{h} (KL {float(d.kl[l, h]):.3f})"] = (d.vanilla_rows[l, h], d.edited_rows[l, h])
    subject = [i for i, g in enumerate(p.groups) if g.startswith("subject")]
    kl = plots.heatmaps(
        {"KL(vanilla ‖ edited) of the last token's attention": d.kl},
        [str(h) for h in range(H)],
        title=f"Attention drift per head ({name}); P(o_edit) {d.p_edit:.3f}, P(right) {d.p_true:.3f}",
        colorbar="KL",
        x_title="head",
    )
    kl.update_layout(height=460)
    rows = plots.head_attention(
        p.labels,
        heads,
        subject=subject,
        edited=name,
        title=f"The last token's attention in the {k} heads of largest drift: vanilla and {name} "
        f"(the subject's tokens framed)",
    )
    return [kl, rows]


def _case_html(case: EditCase, p, model: Model) -> str:
    e = html.escape
    items = [
        ("case", case.case_id),
        ("model", getattr(model, "name", "")),
        ("subject", case.subject),
        ("prompt", case.prompt),
        ("edit", f"{case.o_true} → {case.o_edit}"),
        ("traced prompt", f"{p.text} (right answer: {p.answer.strip()})"),
    ]
    rows = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in items)
    return f'<dl class="case">{rows}</dl>'


def _metrics_html(before: dict, after: dict[str, dict]) -> str:
    """Metrics before and after each edit: percentages (scores) and mean probabilities × 100."""
    e = html.escape
    names = [m for m in METRICS if m in before or any(m in a for a in after.values())]
    head = "".join(f"<th>{e(n)}</th>" for n in ["metric", "before", *(f"after {k}" for k in after)])
    body = []
    for m in names:
        cells = [_fmt(before.get(m))] + [_fmt(a.get(m)) for a in after.values()]
        k = before.get(f"{m}_k")
        label = f"{m} ({k} prompt{'s' * (k != 1)})" if k else m
        body.append(f"<tr><td>{e(label)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    sizes = [
        f"{e(k)}: ‖ΔW‖/‖W‖ {max(a['edit']['relative_change'].values()):.4f}"
        for k, a in after.items()
        if isinstance(a.get("edit"), dict) and a["edit"].get("relative_change")
    ]
    note = (
        '<p class="note">Scores (…S) are the percentage of prompts where the right answer is more '
        "probable than the wrong one; magnitudes (…M) the right answer's mean probability, in "
        "percent; AvgS the harmonic mean of ES, PS, NS, RS and DNS. " + "; ".join(sizes) + "</p>"
    )
    return f'<table class="metrics"><tr>{head}</tr>{"".join(body)}</table>{note}'


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "n/a"
    return f"{float(x):.1f}"
