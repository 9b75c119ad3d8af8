"""Benchmarks: speed ratios measured in one run, same numbers checked. Results go in BENCHMARKS.md.

    python analyses/bench.py eval [--cases 100] [--data PATH]

- ``eval``: scoring every (prompt, target) pair of N cases, drift's batched scorer
  (right-padded batches, shared prefixes, unembedding only where scored) against a per-prompt
  loop (one full forward per pair). Checks both give the same log-probabilities to 1e-5.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT.parent / "shared" / "data" / "counterfact-merged-dev.json"


def naive_logprobs(model, prompts, targets) -> torch.Tensor:
    """One full forward per pair, the whole vocabulary at every position."""
    out = []
    with torch.no_grad():
        for p, t in zip(prompts, targets):
            p_ids, t_ids = model.encode(p), model.encode_target(t)
            logp = model.forward(torch.tensor([p_ids + t_ids]))[0].log_softmax(-1)
            out.append(sum(float(logp[len(p_ids) - 1 + j, tok]) for j, tok in enumerate(t_ids)))
    return torch.tensor(out)


def bench_eval(args) -> None:
    import drift
    from drift.data import load_cases
    from drift.metrics import plan_case
    from drift.scoring import score_targets

    data = args.data or (str(DEV_SET) if DEV_SET.exists() else "builtin")
    cases = load_cases(data, limit=args.cases)
    pairs = [pair for c in cases for pair in plan_case(c).pairs]
    prompts, targets = [p for p, _ in pairs], [t for _, t in pairs]
    model = drift.load_model(args.model)
    score_targets(model, prompts[:4], targets[:4])  # warm-up
    t0 = time.perf_counter()
    fast = score_targets(model, prompts, targets).logprob
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = naive_logprobs(model, prompts, targets)
    t_slow = time.perf_counter() - t0
    diff = (fast - slow).abs().max().item()
    print(f"eval scoring: {len(cases)} cases from {Path(data).name}, {len(pairs)} (prompt, target) pairs, "
          f"{torch.get_num_threads()} threads")
    print(f"  batched {t_fast:.1f} s   per-prompt loop {t_slow:.1f} s   ratio {t_slow / t_fast:.1f}x   "
          f"max |Δ log p| {diff:.2e}")
    if diff > 1e-5:
        sys.exit("batched and per-prompt log-probabilities differ by more than 1e-5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="which", required=True)
    ev = sub.add_parser("eval", help="batched evaluation vs a per-prompt loop")
    ev.add_argument("--cases", type=int, default=100)
    ev.add_argument("--data", default=None, help="case file (default: the shared dev set, else builtin)")
    ev.add_argument("--model", default=None)
    args = parser.parse_args()
    {"eval": bench_eval}[args.which](args)


if __name__ == "__main__":
    main()
