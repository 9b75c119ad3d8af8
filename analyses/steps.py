"""ROME at 20 steps against 80 without early stopping: does more optimisation keep the edit?

For each case and each configuration, prints one JSON line: P(o_edit) of the edited model on the
bare rewrite prompt, the optimisation's last NLL, ‖δ‖, and the "miss" ‖bare prompt's MLP output
after the edit − v*‖ / ‖δ‖ (0 when the update gives the bare prompt exactly the optimised value).
``--config earlier`` is drift's ROME before it followed the reference code (update solved at the
averaged key, squared weight decay, NLL-only early stop, 6 fixed prefixes); ``faithful`` is the
preset. docs/fidelity.md ("The 80-step anomaly") has the numbers.

    python analyses/steps.py --config earlier --cases 8
    python analyses/steps.py --config faithful --cases 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import drift  # noqa: E402
from drift.data import load_cases  # noqa: E402
from drift.editors.rome import compute_rome, preset  # noqa: E402

DEV_SET = ROOT.parent / "shared" / "data" / "counterfact-merged-dev.json"
EARLIER = {"anchor": "mean", "squared_decay": True, "stop_on": "nll", "n_prefixes": 6}


def one(model, case, hp) -> dict:
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


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=["earlier", "faithful"], default="faithful")
    ap.add_argument("--cases", type=int, default=3, help="the first N cases of --data (default 3)")
    ap.add_argument("--data", default=str(DEV_SET))
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    model = drift.load_model(args.model, device=args.device)
    hp = preset(model)
    if args.config == "earlier":
        hp = replace(hp, **EARLIER)
    for case in load_cases(args.data, limit=args.cases):
        row = {"case": case.case_id, "config": args.config}
        for steps, stop in ((20, hp.early_stop), (80, 0.0)):
            row[str(steps)] = one(model, case, replace(hp, steps=steps, early_stop=stop))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
