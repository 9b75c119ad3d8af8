"""One HTML report per edit: the case, its metrics before and after, where the edit enters the
forward pass and the heads that drift most (:mod:`drift.interp.report`).

    python -m drift report                          # default model, the first built-in case, ROME
    python -m drift report --case 3 --sadr --out eiffel.html    # with the paper's SADR edit beside it

The page is one self-contained file (plotly.js inlined): it opens offline in any browser.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from drift.cli import options as O
from drift.cli.commands.trace import kinds as kind_list
from drift.cli.script import parse_script


def add_options(p: argparse.ArgumentParser) -> None:
    """``report``'s options."""
    O.add_data(p, with_limit=False)
    O.add_model(p)
    O.add_editor(p, default="rome", choices=O.EDITED)
    O.add_scoring(p, pool=False)
    O.add_run(p)
    g = p.add_argument_group("report")
    g.add_argument(
        "--case",
        type=int,
        default=0,
        metavar="N",
        help="the case's position in --data, from 0 (default: 0, the first)",
    )
    g.add_argument(
        "--kinds",
        type=kind_list,
        default="mlp,attn,layer",
        help="module kinds to substitute (default mlp,attn,layer)",
    )
    g.add_argument(
        "--window", type=O.positive_int, default=6, help="layers per contaminating substitution (default 6)"
    )
    g.add_argument("--top", type=O.positive_int, default=6, help="heads of largest drift shown (default 6)")
    O.add_output(p, kind="file", default="report.html", restart=False)


def parse(argv=None) -> argparse.Namespace:
    """``report``'s options on a parser of its own, with ``-v``/``-q``."""
    return parse_script("python -m drift report", __doc__, add_options, argv)


def main(argv=None) -> int:
    """``report ARGS`` with its own parser."""
    return run(parse(argv))


def run(args: argparse.Namespace) -> int:
    """Load the model, compute the case's edit (and its SADR edit with ``--sadr``), write the page."""
    import torch

    import drift
    from drift.cli.jobs import resolve_editor
    from drift.data import load_cases
    from drift.editors import get_compute
    from drift.interp.report import report

    o = O.Options.of(args, "report")
    cases = load_cases(args.data)
    if not 0 <= args.case < len(cases):
        raise ValueError(f"--case {args.case}: {args.data} has {len(cases)} cases (0 to {len(cases) - 1})")
    case = cases[args.case]
    plain, overrides = resolve_editor(replace(o, editor=replace(o.editor, sadr=None)))
    torch.manual_seed(o.run.seed)
    model = drift.load_model(args.model, device=args.device, dtype=args.dtype)
    name = plain.editor.upper()
    edit = get_compute(plain.editor, drop_rate=plain.dr, seed=o.run.seed, **overrides)(model, case)
    sadr, label = None, f"{name} + SADR"
    if o.editor.sadr is not None:
        with_sadr, overrides = resolve_editor(o)
        steps = f", {with_sadr.steps} steps" if with_sadr.steps else ""
        label = f"{name} + SADR (γ {with_sadr.sadr:g}{steps})"
        sadr = get_compute(with_sadr.editor, drop_rate=with_sadr.dr, seed=o.run.seed, **overrides)(
            model, case
        )
    path = report(
        model,
        edit,
        case,
        sadr=sadr,
        path=args.out,
        labels=(name, label),
        kinds=args.kinds,
        window=args.window,
        top=args.top,
        scoring=args.scoring,
        verbose=o.progress,
    )
    print(f"wrote {path}")
    return 0
