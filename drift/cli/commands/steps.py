"""ROME at 20 steps against 80 without early stopping: does more optimisation keep the edit?

For each case and each configuration, prints one JSON line: P(o_edit) of the edited model on the
bare rewrite prompt, the optimisation's last NLL, ‖δ‖, and the "miss" ‖bare prompt's MLP output
after the edit − v*‖ / ‖δ‖ (0 when the update gives the bare prompt exactly the optimised value).
``--config earlier`` is ROME with the update solved at the averaged key, squared weight decay,
an NLL-only early stop and 6 fixed prefixes; ``faithful`` is the preset. docs/fidelity.md ("The
80-step anomaly") has the numbers.

    python -m drift steps --config earlier --limit 8
    python -m drift steps --config faithful --limit 3

(``python analyses/steps.py`` is the same command.)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

from drift.cli import options as O
from drift.cli.script import parse_script
from drift.data import dev_set_or_builtin

EARLIER = {"anchor": "mean", "squared_decay": True, "stop_on": "nll", "n_prefixes": 6}


def one(model, case, hp) -> dict:
    import torch

    from drift.editors.rome import compute_rome

    t0 = time.time()
    edit = compute_rome(model, case, hp)
    tokens = torch.tensor([model.encode(case.prompt)])
    pos = model.subject_positions(case.prompt, case.subject)[-1]
    site = ("mlp_out", hp.layer)
    v0 = model.capture(tokens, *site)[0, pos].double()
    v_star = edit.info["v_star"].double()
    with edit.applied(model):
        p = model.target_prob(case.prompt, case.o_edit)
        got = model.capture(tokens, *site)[0, pos].double()
    delta = v_star - v0
    return {
        "p_edit": round(p, 4),
        "nll": round(edit.info["losses"][-1]["nll"], 4),
        "passes": len(edit.info["losses"]),
        "delta_norm": round(float(delta.norm()), 3),
        "miss": round(float((got - v_star).norm() / delta.norm()), 3),
        "seconds": round(time.time() - t0, 1),
    }


def add_options(p: argparse.ArgumentParser) -> None:
    """``steps``'s options."""
    O.add_data(p, default=dev_set_or_builtin(), limit=3)
    O.add_model(p)
    p.add_argument("--config", choices=["earlier", "faithful"], default="faithful")


def parse(argv=None) -> argparse.Namespace:
    """``analyses/steps.py``'s options: this command's, and ``-v``/``-q``."""
    return parse_script("analyses/steps.py", __doc__, add_options, argv)


def main(argv=None) -> None:
    """``python analyses/steps.py ARGS``: with the script's own parser."""
    run(parse(argv))


def run(args: argparse.Namespace) -> None:
    """One JSON line per case (``python -m drift steps``)."""
    import drift
    from drift.data import load_cases
    from drift.editors.rome import preset

    model = drift.load_model(args.model, device=args.device, dtype=args.dtype)
    hp = preset(model)
    if args.config == "earlier":
        hp = replace(hp, **EARLIER)
    for case in load_cases(args.data, limit=args.limit):
        row = {"case": case.case_id, "config": args.config}
        for steps, stop in ((20, hp.early_stop), (80, 0.0)):
            row[str(steps)] = one(model, case, replace(hp, steps=steps, early_stop=stop))
        print(json.dumps(row), flush=True)
