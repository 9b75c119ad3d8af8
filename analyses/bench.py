"""Benchmarks: speed ratios measured in one run, same numbers checked. Results go in BENCHMARKS.md.

    python analyses/bench.py eval [--cases 100] [--data PATH]
    python analyses/bench.py rome [--edits 3] [--steps 20] [--skip-naive]
    python analyses/bench.py sweep [--layers 10]
    python analyses/bench.py sadr [--edits 3] [--steps 20]
    python analyses/bench.py ray [--cases 6] [--steps 5] [--workers 2]

- ``eval``: scoring every (prompt, target) pair of N cases, drift's batched scorer (packed
  prefix-tree rows, unembedding only where scored; and its right-padded layout) against a
  per-prompt loop (one full forward per pair), interleaved. Checks all give the same
  probabilities to 1e-5.
- ``rome``: ROME's target-vector optimisation, drift's (one batched forward/backward per step over
  all prompts, starting at the edit layer, running only the columns from the subject's last token
  on with the ones before held as keys and values, unembedding only scored positions) against the
  same without the key-value prefix (every column each step) and a naive one (per prompt, full
  forward from the tokens, full logits), the same number of steps (no early stop). Checks the
  optimised vectors agree.
- ``sweep``: contaminating substitution (attention outputs, window 6) on one distracting prompt
  of a ROME edit, every token at ``--layers`` evenly spaced centre layers: drift's sweep (starts
  at the first patched layer from the cached residual stream, many states per forward) against
  one full forward per state. Checks both agree to 1e-5.
- ``sadr``: ROME per-edit time with and without SADR at the same number of steps (no early
  stop), alternating the two so both see the same machine load.
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
    score_targets(model, prompts[:4], targets[:4])  # warm-up (and the one-time packing check)
    # Interleaved so all sides see the same load: packed, padded, the loop's first half, packed,
    # padded, its second half. The batched sides' times are the means of their two full runs.
    half = len(pairs) // 2
    t_fast, t_pad, t_slow, slow = [], [], 0.0, []
    for part in (slice(0, half), slice(half, None)):
        t0 = time.perf_counter()
        fast = score_targets(model, prompts, targets, packed=True).logprob
        t_fast.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        padded = score_targets(model, prompts, targets, packed=False).logprob
        t_pad.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        slow.append(naive_logprobs(model, prompts[part], targets[part]))
        t_slow += time.perf_counter() - t0
    slow = torch.cat(slow)
    t_fast, t_pad = sum(t_fast) / 2, sum(t_pad) / 2
    for name, got in (("packed", fast), ("padded", padded)):
        diff = (got.exp() - slow.exp()).abs().max().item()  # the metrics' quantity: probabilities
        rel = ((got - slow).abs() / slow.abs().clamp(min=1e-3)).max().item()
        print(f"  {name}: max |ΔP| {diff:.1e}   max relative |Δ log p| {rel:.1e}")
        if diff > 1e-5:
            sys.exit(f"{name} and per-prompt probabilities differ by more than 1e-5")
    print(
        f"eval scoring: {len(cases)} cases from {Path(data).name}, {len(pairs)} (prompt, target) pairs, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"  packed {t_fast:.1f} s   padded {t_pad:.1f} s   per-prompt loop {t_slow:.1f} s   "
        f"ratio {t_slow / t_fast:.1f}x (padded {t_slow / t_pad:.1f}x)"
    )


def naive_rome_vector(model, case, layer, prefixes, steps, lr, kl_factor, weight_decay, clamp_norm):
    """ROME's δ the straightforward way: every prompt on its own, full forward, full logits."""
    target = model.encode_target(case.o_edit)
    rows = []
    for prefix in prefixes:
        prompt = prefix + case.prompt
        ids = model.encode(prompt)
        rows.append((ids + target[:-1], model.subject_positions(prompt, case.subject)[-1], len(ids) - 1))
    kl_prompt = f"{case.subject} is a"
    kl_ids = model.encode(kl_prompt)
    kl_row = (kl_ids, model.subject_positions(kl_prompt, case.subject)[-1])
    name = model.hook_name("mlp_out", layer)
    delta = torch.zeros(model.cfg.d_model, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)
    v0 = {}

    def run(ids, pos):
        def add(act, hook):
            v0.setdefault("v", act[0, pos].detach().clone())
            out = act.clone()
            out[0, pos] = out[0, pos] + delta
            return out

        return model.forward(torch.tensor([ids]), [(name, add)])[0].log_softmax(-1)

    vanilla = None
    for it in range(steps):
        nll = 0.0
        for ids, pos, q in rows:
            logp = run(ids, pos)
            nll = nll - sum(logp[q + j, t] for j, t in enumerate(target)) / len(target)
        nll = nll / len(rows)
        kl_logp = run(*kl_row)[kl_row[1]]  # at the subject's last token, as the reference reads it
        if vanilla is None:
            vanilla = kl_logp.detach()
        kl = kl_factor * (kl_logp.exp() * (kl_logp - vanilla)).sum()  # KL(edited ‖ vanilla)
        loss = nll + kl + weight_decay * delta.norm() / v0["v"].norm() ** 2
        if it == steps - 1:  # the last pass only measures
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            limit = clamp_norm * v0["v"].norm()
            if delta.norm() > limit:
                delta.mul_(limit / delta.norm())
    return delta.detach()


def bench_rome(args) -> None:
    import drift
    from drift.data import load_cases
    from drift.editors.context import prefix_groups
    from drift.editors.objectives import default_terms
    from drift.editors.rome import preset
    from drift.editors.target import optimise_targets

    model = drift.load_model(args.model)
    hp = preset(model)
    prefixes = [p for g in prefix_groups(model, hp.context, hp.n_prefixes) for p in g]
    cases = load_cases(args.data, limit=args.edits)
    t_fast = t_full = t_slow = 0.0
    worst = worst_full = 0.0
    for case in cases:
        kw = dict(prefixes=prefixes, steps=args.steps, lr=hp.lr, clamp_norm=hp.clamp_norm, early_stop=-1.0)
        site, terms = [("mlp_out", hp.layer)], default_terms(hp.kl_factor, hp.weight_decay)
        t0 = time.perf_counter()
        res = optimise_targets(model, case, site, terms, **kw)
        t_fast += time.perf_counter() - t0
        fast = res.deltas[("mlp_out", hp.layer)]
        t0 = time.perf_counter()  # every column every step: drift before the key-value prefix
        full = optimise_targets(model, case, site, terms, prefix_cache=False, **kw)
        t_full += time.perf_counter() - t0
        full = full.deltas[("mlp_out", hp.layer)]
        worst_full = max(worst_full, float((fast - full).norm() / full.norm()))
        if args.skip_naive:
            continue
        t0 = time.perf_counter()
        slow = naive_rome_vector(
            model, case, hp.layer, prefixes, args.steps, hp.lr, hp.kl_factor, hp.weight_decay, hp.clamp_norm
        )
        t_slow += time.perf_counter() - t0
        worst = max(worst, float((fast - slow).norm() / slow.norm()))
    n = len(cases)
    print(
        f"ROME target optimisation: {n} edits, {args.steps} steps, {len(prefixes)} prompts + KL prompt, "
        f"layer {hp.layer}, {torch.get_num_threads()} threads"
    )
    print(
        f"  drift {t_fast / n:.2f} s/edit   every column each step {t_full / n:.2f} s/edit   "
        f"ratio {t_full / t_fast:.2f}x   max relative |Δδ| {worst_full:.1e}"
    )
    if not args.skip_naive:
        print(
            f"  naive {t_slow / n:.2f} s/edit   ratio {t_slow / t_fast:.1f}x   max relative |Δδ| {worst:.1e}"
        )
    if worst > 1e-3 or worst_full > 1e-4:
        sys.exit("drift's and the reference optimisations disagree")


def bench_sweep(args) -> None:
    import drift
    from drift import tracing
    from drift.data import load_cases
    from drift.editors.rome import compute_rome
    from drift.patching import Write, record, sweep, sweep_naive

    model = drift.load_model(args.model)
    case = load_cases("builtin")[0]
    edit = compute_rome(model, case)
    p = tracing.distracting_prompt(model, case)
    L, T = model.cfg.n_layers, p.tokens.shape[1]
    with edit.applied(model):
        src = record(model, p.tokens, [("attn_out", l) for l in range(L)])
    centres = sorted({round(i * (L - 1) / max(1, args.layers - 1)) for i in range(args.layers)})
    states = [
        tuple(Write("attn_out", j, (t,)) for j in tracing.centred(l, 6, L)) for l in centres for t in range(T)
    ]
    sweep(model, p.tokens, states[:4], src, p.read)  # warm-up
    t0 = time.perf_counter()
    fast = sweep(model, p.tokens, states, src, p.read)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = sweep_naive(model, p.tokens, states, src, p.read)
    t_slow = time.perf_counter() - t0
    diff = (fast - slow).abs().max().item()
    print(
        f"patch sweep: {len(states)} states ({len(centres)} centre layers x {T} tokens), attention outputs, "
        f"window 6, {torch.get_num_threads()} threads"
    )
    print(
        f"  drift {t_fast:.1f} s   naive {t_slow:.1f} s   ratio {t_slow / t_fast:.1f}x   max |ΔP| {diff:.1e}"
    )
    if diff > 1e-5:
        sys.exit("the fast and the naive sweep disagree")


def bench_sadr(args) -> None:
    from dataclasses import replace

    import drift
    from drift.data import load_cases
    from drift.editors.rome import compute_rome, preset
    from drift.editors.sadr import SADR

    model = drift.load_model(args.model)
    cases = load_cases("builtin")[:: max(1, 94 // args.edits)][: args.edits]
    base = replace(preset(model), steps=args.steps, early_stop=0.0)
    with_sadr = replace(base, extra_terms=(SADR(1e-2),))
    compute_rome(model, cases[0], replace(base, steps=1))  # warm-up (and key statistics)
    times = {"rome": 0.0, "rome+sadr": 0.0}
    for case in cases:
        for name, hp in (("rome", base), ("rome+sadr", with_sadr)):
            t0 = time.perf_counter()
            compute_rome(model, case, hp)
            times[name] += time.perf_counter() - t0
    n = len(cases)
    print(f"SADR overhead: {n} ROME edits, {args.steps} steps each, {torch.get_num_threads()} threads")
    print(
        f"  rome {times['rome'] / n:.2f} s/edit   rome+sadr {times['rome+sadr'] / n:.2f} s/edit   "
        f"ratio {times['rome+sadr'] / times['rome']:.3f}"
    )


def bench_ray(args) -> None:
    """The same runs through ``sweep``: in this process one after another, on one Ray worker (the
    engine's overhead) and on ``--workers`` Ray workers (what the cores give); cases per minute,
    Ray's start included, and the rows checked equal."""
    import json
    import tempfile

    from drift import sweep

    shared = {"data": args.data, "limit": args.cases, "no_fluency": True, "model": args.model}
    runs = sweep.expand(
        shared
        | {
            "run": [
                {"name": "none"},
                {"name": "none-product", "scoring": "product"},
                {"name": "rome", "editor": "rome", "steps": args.steps},
                {"name": "rome-kl1", "editor": "rome", "steps": args.steps, "hp": {"kl_factor": 1.0}},
            ]
        }
    )
    n = len(runs) * args.cases
    sides = [("one after another (local)", "local", None), ("Ray, 1 worker", "ray", 1)]
    sides.append((f"Ray, {args.workers} workers", "ray", args.workers))
    root = Path(tempfile.mkdtemp(prefix="drift-bench-ray-"))
    sweep.execute(runs[2:3], root / "warm", engine="local", chunk=args.chunk, progress=False)  # caches
    timed, results = {}, {}
    for label, engine, workers in sides:
        t0 = time.perf_counter()
        sweep.execute(runs, root / label, engine=engine, workers=workers, chunk=args.chunk, progress=False)
        timed[label] = time.perf_counter() - t0
        results[label] = {r.name: json.loads((root / label / f"{r.name}.json").read_text()) for r in runs}
    worst = 0.0
    first = results[sides[0][0]]
    for label, res in results.items():
        for name, run in res.items():
            for a, b in zip(first[name]["cases"], run["cases"], strict=True):
                worst = max(worst, *(abs(a["metrics"][k] - b["metrics"][k]) for k in a["metrics"]))
    print(
        f"sweep of {len(runs)} runs x {args.cases} cases ({n} cases; ROME {args.steps} steps), "
        f"chunks of {args.chunk}"
    )
    base = timed[sides[0][0]]
    for label, t in timed.items():
        print(f"  {label:<28} {t:7.1f} s   {n / t * 60:6.1f} cases/min   {base / t:5.2f}x of local")
    print(f"  max |Δ metric| between sides: {worst:.1e} (percentage points)")
    if worst > 1e-3:
        sys.exit("the sweep's sides disagree")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="which", required=True)
    ev = sub.add_parser("eval", help="batched evaluation vs a per-prompt loop")
    ev.add_argument("--cases", type=int, default=100)
    ev.add_argument("--data", default=None, help="case file (default: the shared dev set, else builtin)")
    ev.add_argument("--model", default=None)
    ro = sub.add_parser("rome", help="ROME target optimisation vs a naive per-prompt loop")
    ro.add_argument("--edits", type=int, default=3)
    ro.add_argument("--steps", type=int, default=20)
    ro.add_argument("--skip-naive", action="store_true", help="time drift with and without the prefix only")
    ro.add_argument("--data", default="builtin", help="case file (default: builtin)")
    ro.add_argument("--model", default=None)
    sw = sub.add_parser("sweep", help="patch sweep vs one full forward per state")
    sw.add_argument("--layers", type=int, default=10)
    sw.add_argument("--model", default=None)
    sa = sub.add_parser("sadr", help="ROME with and without SADR, same steps")
    sa.add_argument("--edits", type=int, default=3)
    sa.add_argument("--steps", type=int, default=20)
    sa.add_argument("--model", default=None)
    ry = sub.add_parser("ray", help="a 4-run sweep: in this process, on 1 Ray worker, on N")
    ry.add_argument("--cases", type=int, default=6)
    ry.add_argument("--steps", type=int, default=5, help="ROME steps of the two edited runs (default 5)")
    ry.add_argument("--chunk", type=int, default=3)
    ry.add_argument("--workers", type=int, default=2)
    ry.add_argument("--data", default="builtin")
    ry.add_argument("--model", default=None)
    args = parser.parse_args()
    benches = {
        "eval": bench_eval,
        "rome": bench_rome,
        "sweep": bench_sweep,
        "sadr": bench_sadr,
        "ray": bench_ray,
    }
    benches[args.which](args)


if __name__ == "__main__":
    main()
