"""Benchmarks: speed ratios measured in one run, same numbers checked. Results go in BENCHMARKS.md.

    python benchmarks/bench.py eval [--cases 100] [--data PATH]
    python benchmarks/bench.py rome [--edits 3] [--steps 20] [--skip-naive]
    python benchmarks/bench.py sweep [--layers 10]
    python benchmarks/bench.py sadr [--edits 3] [--steps 20]
    python benchmarks/bench.py ray [--cases 6] [--steps 5] [--workers 2]
    python benchmarks/bench.py width [--layers 4] [--editor rome] [--steps 3] [--dtype bf16] [--device cuda]
    python benchmarks/bench.py batch [--cases 8] [--chunk 4] [--steps 20] [--sadr-steps 20]
    python benchmarks/bench.py peer --reference DIR [--cases 4] [--data PATH] [--steps 20] [--gamma 0]
        [--flops] [--profile]

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
- ``batch``: ROME and ROME+SADR edits with their target vectors optimised ``--chunk`` cases per
  forward/backward against one case at a time, alternating; cases per hour and agreement.
- ``sadr``: ROME per-edit time with and without SADR at the same number of steps (no early
  stop), alternating the two so both see the same machine load.
- ``peer``: drift's ROME against the paper's own code (its ``execute_rome``, from a checkout of the
  reference passed as ``--reference``, run by ``benchmarks/peer_rome.py`` in ``.venv-peer``; set it up
  with ``bash scripts/setup-peer.sh DIR``; nothing of it is copied here): same model folder, cases,
  key statistics C, context prefixes and settings, one thread each, alternating case by case.
  Seconds per edit, ‖ΔW‖/‖W‖, final loss and passes of each side; ``--flops``: matrix-multiply
  GFLOP per optimisation step of each instead; ``--profile``: where drift's time goes on the
  case with the longest new object (torch.profiler's top ops).
- ``width``: one ROME (or MEMIT) edit of a randomly initialised model of GPT-J-6B's shape
  (d_model 4096, 16 heads, d_mlp 16384, partial rotary, attention and MLP in parallel, its 50,400-
  token vocabulary) with ``--layers`` layers (default 28 on a GPU, 4 on a CPU) in ``--dtype``
  (default bf16): seconds and peak memory of building it, of its key statistics and of the edit.
  Timing only: no weights, and key statistics from a few thousand tokens, not 102,200.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drift.cli import options as O  # noqa: E402
from drift.data import dev_set_or_builtin  # noqa: E402


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
    from drift.evaluation.metrics import plan_case
    from drift.model.scoring import score_targets

    data = args.data or dev_set_or_builtin()
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


def bench_patch_scan(args) -> None:
    import drift
    from drift.data import load_cases
    from drift.editors.rome import compute_rome
    from drift.interp import tracing
    from drift.interp.patching import Write, patch_scan, patch_scan_naive, record

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
    patch_scan(model, p.tokens, states[:4], src, p.read)  # warm-up
    t0 = time.perf_counter()
    fast = patch_scan(model, p.tokens, states, src, p.read)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = patch_scan_naive(model, p.tokens, states, src, p.read)
    t_slow = time.perf_counter() - t0
    diff = (fast - slow).abs().max().item()
    print(
        f"patch scan: {len(states)} states ({len(centres)} centre layers x {T} tokens), attention outputs, "
        f"window 6, {torch.get_num_threads()} threads"
    )
    print(
        f"  drift {t_fast:.1f} s   naive {t_slow:.1f} s   ratio {t_slow / t_fast:.1f}x   max |ΔP| {diff:.1e}"
    )
    if diff > 1e-5:
        sys.exit("the fast and the naive patch scans disagree")


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

    from drift.cli import sweep

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


def bench_batch(args) -> None:
    """Cases per hour of ROME (and ROME+SADR), their target vectors optimised in batches of
    ``--chunk`` cases against one case at a time: the same cases, the same settings (the preset,
    early stop on), the two sides alternating chunk by chunk (which goes first alternates too);
    checks each batched edit equals its one-at-a-time edit (‖ΔW − ΔW₁‖/‖ΔW₁‖, passes)."""
    import drift
    from drift.data import load_cases
    from drift.editors import get_compute
    from drift.editors.sadr import SADR
    from drift.editors.target import by_length

    model = drift.load_model(args.model)
    data = args.data or dev_set_or_builtin()
    cases = by_length(model, load_cases(data, limit=args.cases))  # as evaluation chunks them
    arms = {"rome": get_compute("rome", steps=args.steps)}
    if not args.no_sadr:
        arms["rome+sadr"] = get_compute("rome", steps=args.sadr_steps, extra_terms=(SADR(args.gamma),))
    arms["rome"](model, cases[0], steps=1)  # warm-up: key statistics and prefixes cached
    print(
        f"batched editing: {len(cases)} cases of {data}, chunks of {args.chunk}, "
        f"{torch.get_num_threads()} threads"
    )
    for name, compute in arms.items():
        timed = {"one at a time": 0.0, "batched": 0.0}
        worst, passes_differ = 0.0, 0
        for k, start in enumerate(range(0, len(cases), args.chunk)):
            chunk = cases[start : start + args.chunk]
            order = ["one at a time", "batched"] if k % 2 == 0 else ["batched", "one at a time"]
            edits = {}
            for side in order:
                t0 = time.perf_counter()
                if side == "batched":
                    edits[side] = compute.many(model, chunk)
                else:
                    edits[side] = [compute(model, c) for c in chunk]
                timed[side] += time.perf_counter() - t0
            for a, b in zip(edits["one at a time"], edits["batched"]):
                da, db = a.deltas[0].delta, b.deltas[0].delta
                worst = max(worst, float((da - db).norm() / da.norm()))
                passes_differ += len(a.info["losses"]) != len(b.info["losses"])
        n = len(cases)
        one, many = timed["one at a time"], timed["batched"]
        print(
            f"  {name}: one at a time {n / one * 3600:7.1f} cases/h ({one / n:5.1f} s/case)   "
            f"batched {n / many * 3600:7.1f} cases/h ({many / n:5.1f} s/case)   {one / many:4.2f}x"
        )
        print(f"    agreement: max ‖ΔW − ΔW₁‖/‖ΔW₁‖ {worst:.1e}; cases whose passes differ: {passes_differ}")


PEER_SCRIPT = ROOT / "benchmarks" / "peer_rome.py"


class _PeerWorker:
    """``benchmarks/peer_rome.py --serve`` in ``.venv-peer``: the reference's ROME in its own
    process and environment, one JSON job a line; its noise goes to a log file."""

    def __init__(self, python: Path, reference: Path, setup: dict, threads: int = 1):
        import json
        import os
        import subprocess
        import tempfile

        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
            env[var] = str(threads)
        self.log = tempfile.NamedTemporaryFile("w+", prefix="drift-peer-", suffix=".log", delete=False)
        cmd = [
            str(python),
            str(PEER_SCRIPT),
            "--reference",
            str(reference),
            "--serve",
            "--threads",
            str(threads),
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )
        self._json = json
        self.ready = self.ask(setup)

    def ask(self, job: dict) -> dict:
        self.proc.stdin.write(self._json.dumps(job) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.log.flush()
                tail = Path(self.log.name).read_text()[-3000:]
                sys.exit(
                    f"the peer process ended (exit {self.proc.wait()}); its log {self.log.name} ends:\n{tail}"
                )
            if line.startswith("@peer "):
                answer = self._json.loads(line[len("@peer ") :])
                if "error" in answer:
                    sys.exit(f"the peer failed: {answer['error']} (log: {self.log.name})")
                return answer

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _peer_case(case) -> dict:
    """A case as the reference's request takes it: the prompt as a template ("{}" at the
    subject's slot) when the case came from one, else the filled prompt (the reference then
    puts "{}" where the subject occurs)."""
    prompt, s = case.prompt, case.subject_start
    if s is not None and prompt[s : s + len(case.subject)] == case.subject:
        prompt = prompt[:s] + "{}" + prompt[s + len(case.subject) :]
    return {"case_id": case.case_id, "prompt": prompt, "subject": case.subject, "target_new": case.o_edit}


def _stats_file(model, layer: int) -> Path:
    """drift's cached key statistics C of ``layer`` (the file ``key_second_moment`` reads by
    default), computed first if missing."""
    from drift.editors import stats
    from drift.util.store import cache_root

    stats.key_second_moment(model, [layer])
    max_tokens = min(stats.DEFAULT_SEQ_LEN, model.cfg.n_ctx)
    cid = stats.corpus_id(stats.default_sequences(model, seq_len=max_tokens))
    tag = f"{cid}-t{max_tokens}-p1" + stats.precision_tag(model)
    path = cache_root() / "stats" / stats._slug(model.name) / f"mlp_key-L{layer}-{tag}.safetensors"
    if not path.exists():
        sys.exit(f"drift's key statistics are not where expected: {path}")
    return path


def _drift_step_gflop(model, case, hp, prefixes) -> dict:
    """Matrix-multiply GFLOP of drift's target optimisation at 2 and 3 passes, early stop off,
    whose difference is one step (forward and backward), as ``peer_rome.py --flops`` counts it;
    and of a whole edit (``compute_rome`` with ``hp``)."""
    from torch.utils.flop_counter import FlopCounterMode

    from drift.editors.objectives import default_terms
    from drift.editors.rome import compute_rome
    from drift.editors.target import optimise_targets

    terms = default_terms(hp.kl_factor, hp.weight_decay, squared_decay=hp.squared_decay) + list(
        hp.extra_terms
    )
    counted = {}
    for steps in (2, 3):
        counter = FlopCounterMode(display=False)
        with counter:
            optimise_targets(
                model,
                case,
                [("mlp_out", hp.layer)],
                [t.fresh() for t in terms],
                prefixes=prefixes,
                steps=steps,
                lr=hp.lr,
                clamp_norm=hp.clamp_norm,
                key_layers=[hp.layer],
                block_attention_grad=hp.block_attention_grad,
                early_stop=0.0,
                stop_on=hp.stop_on,
            )
        counted[steps] = counter.get_total_flops() / 1e9
    counter = FlopCounterMode(display=False)
    with counter:
        edit = compute_rome(model, case, hp)
    return {
        "gflop_2": counted[2],
        "gflop_3": counted[3],
        "gflop_step": counted[3] - counted[2],
        "gflop_edit": counter.get_total_flops() / 1e9,
        "passes": len(edit.info["losses"]),
    }


def bench_peer(args) -> None:
    """drift's ROME against the paper's own code (its ``execute_rome``, run by
    ``benchmarks/peer_rome.py`` in ``.venv-peer`` from the checkout ``--reference``): same model
    folder, cases, key statistics C, context prefixes and settings, one thread each, alternating
    case by case (which side goes first alternates too). Per case: seconds per edit, ‖ΔW‖/‖W‖,
    final loss and passes of both sides."""
    import os
    import statistics
    from dataclasses import replace

    os.environ.setdefault("DRIFT_THREADS", "1")
    torch.set_num_threads(1)
    import drift
    from drift.data import load_cases
    from drift.editors.context import prefix_groups
    from drift.editors.rome import compute_rome, preset
    from drift.editors.sadr import SADR
    from drift.model.loading import DEFAULT_MODEL, packaged_model_folder

    python = Path(args.peer_python) if args.peer_python else ROOT / ".venv-peer" / "bin" / "python"
    if not python.exists():
        sys.exit(f"{python} is missing: bash scripts/setup-peer.sh {args.reference}")
    folder = packaged_model_folder(DEFAULT_MODEL) if args.model is None else Path(args.model)
    if not (folder / "config.json").exists():
        sys.exit(f"the peer loads a local Hugging Face folder; {folder} is none")
    model = drift.load_model(args.model)
    hp = preset(model)
    hp = replace(hp, steps=args.steps or hp.steps, extra_terms=(SADR(args.gamma),) if args.gamma else ())
    data = args.data or dev_set_or_builtin()
    cases = load_cases(data, limit=args.cases)
    compute_rome(model, cases[0], replace(hp, steps=1))  # warm-up: key statistics, prefixes cached
    prefixes = [p for g in prefix_groups(model, hp.context, hp.n_prefixes) for p in g]
    setup = {
        "model": str(folder),
        "stats": str(_stats_file(model, hp.layer)),
        "prefixes": prefixes,
        "layer": hp.layer,
        "steps": hp.steps,
        "lr": hp.lr,
        "kl_factor": hp.kl_factor,
        "weight_decay": hp.weight_decay,
        "clamp_norm": hp.clamp_norm,
        "gamma": args.gamma,
        "threads": 1,
    }
    if hp.squared_decay or hp.stop_on != "total" or hp.anchor != "bare" or hp.n_prefixes:
        sys.exit(
            "the preset departs from the reference's ROME (squared decay, stop rule, anchor, fixed prefixes)"
        )
    peer = _PeerWorker(python, Path(args.reference), setup)
    # The same model: the unedited next-token distribution after the first case's prompt.
    probe = peer.ask({"probe": cases[0].prompt})
    with torch.no_grad():
        ids = model.encode(cases[0].prompt)
        logp = model.forward(torch.tensor([ids]))[0, -1].log_softmax(-1)
    gap = (logp[probe["top"]] - torch.tensor(probe["logp"])).abs().max().item()
    if probe["ids"] != ids or gap > 1e-3:
        sys.exit(
            f"the peer's model or tokenizer is not drift's (tokens equal: {probe['ids'] == ids}, "
            f"max |Δ log p| {gap:.1e})"
        )
    peer.ask({"edit": _peer_case(cases[0]), "steps": 1})  # warm-up: its inverse of C, cached
    label = "ROME" + (f"+SADR (γ {args.gamma:g})" if args.gamma else "")
    print(
        f"drift vs the paper's code ({args.reference}): {label}, {len(cases)} cases of {Path(data).name}, "
        f"layer {hp.layer}, {hp.steps} steps, {len(prefixes)} context prompts + KL prompt; "
        f"drift {torch.get_num_threads()} thread(s), peer {peer.ready['threads']} "
        f"(torch {peer.ready['torch']}); "
        f"unedited log-probs agree to {gap:.1e}"
    )
    if args.flops:
        print(
            "  matrix-multiply GFLOP per optimisation step (forward + backward; 3 passes minus 2, "
            "early stop off) and per edit (the whole edit, early stop on):"
        )
        print(
            f"  {'case':>6} {'target':>6} {'drift':>9} {'peer':>9} {'peer/drift':>10}   "
            "drift 2 / 3 passes   peer 2 / 3 passes   per edit: drift    peer  peer/drift (passes)"
        )
        for case in cases:
            d = _drift_step_gflop(model, case, hp, prefixes)
            p = peer.ask({"flops": _peer_case(case), "gamma": args.gamma, "steps": hp.steps})
            n_t = len(model.encode_target(case.o_edit))
            print(
                f"  {case.case_id:>6} {n_t:>6} {d['gflop_step']:9.1f} {p['gflop_step']:9.1f} "
                f"{p['gflop_step'] / d['gflop_step']:9.2f}x   {d['gflop_2']:7.1f} / {d['gflop_3']:7.1f}   "
                f"{p['gflop_2']:7.1f} / {p['gflop_3']:7.1f}   {d['gflop_edit']:13.0f} {p['gflop_edit']:7.0f} "
                f"{p['gflop_edit'] / d['gflop_edit']:9.2f}x ({d['passes']}, {p['passes']})"
            )
        peer.close()
        return
    rows = []
    for k, case in enumerate(cases):
        out = {}
        for side in ("drift", "peer") if k % 2 == 0 else ("peer", "drift"):
            if side == "peer":
                out[side] = peer.ask({"edit": _peer_case(case), "steps": hp.steps, "gamma": args.gamma})
                continue
            t0 = time.perf_counter()
            edit = compute_rome(model, case, hp)
            seconds = time.perf_counter() - t0
            last = edit.info["losses"][-1]
            W = model.weight("mlp_out", hp.layer)
            out[side] = {
                "seconds": seconds,
                "rel_dw": float(edit.deltas[0].delta.norm() / W.norm()),
                "loss": sum(v for name, v in last.items() if name != "p_target"),
                "passes": len(edit.info["losses"]),
                "delta": edit.deltas[0].delta,
            }
        rows.append((case, out))
        d, p = out["drift"], out["peer"]
        print(
            f"  case {case.case_id}: drift {d['seconds']:.1f} s, peer {p['seconds']:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"  {'case':>6} {'target':>6} {'drift s':>8} {'peer s':>8} {'ratio':>6} "
        f"{'‖ΔW‖/‖W‖ drift':>15} {'peer':>7} {'‖ΔW−ΔWₚ‖/‖ΔWₚ‖':>15} "
        f"{'loss drift':>10} {'peer':>7} {'passes drift':>12} {'peer':>5}"
    )
    for case, out in rows:
        d, p = out["drift"], out["peer"]
        loss_p = "—" if p["loss"] is None else f"{p['loss']:.4f}"
        dw_peer = torch.outer(torch.tensor(p["u"]), torch.tensor(p["v"]))  # [d_mlp, d_model], as drift's
        dw_gap = float((d["delta"] - dw_peer).norm() / dw_peer.norm())
        print(
            f"  {case.case_id:>6} {len(model.encode_target(case.o_edit)):>6} "
            f"{d['seconds']:8.1f} {p['seconds']:8.1f} {p['seconds'] / d['seconds']:5.2f}x "
            f"{d['rel_dw']:15.4f} {p['rel_dw']:7.4f} {dw_gap:15.1e} {d['loss']:10.4f} {loss_p:>7} "
            f"{d['passes']:12d} {p['passes']:5d}"
        )
    ratios = [out["peer"]["seconds"] / out["drift"]["seconds"] for _, out in rows]
    print(f"  median ratio (peer s / drift s, > 1: drift faster): {statistics.median(ratios):.2f}x")
    peer.close()
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        case = max(cases, key=lambda c: len(model.encode_target(c.o_edit)))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            edit = compute_rome(model, case, hp)
            seconds = time.perf_counter() - t0
        n_t = len(model.encode_target(case.o_edit))
        print(
            f"\nprofile of drift's edit of case {case.case_id} ({n_t} target tokens, "
            f"{len(edit.info['losses'])} passes, {seconds:.1f} s under the profiler): "
            "top ops by self CPU time"
        )
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows))


# GPT-J-6B's config.json but for its depth (28 layers there): the width every layer has.
GPTJ_SHAPE = dict(vocab_size=50400, n_positions=2048, n_embd=4096, n_head=16, rotary_dim=64, n_inner=16384)
GPTJ_MEMIT_LAYERS = (3, 4, 5, 6, 7, 8)  # MEMIT's GPT-J layers (drift.editors.presets)


def peak_gib(device) -> float:
    """Peak memory so far in GiB: the CUDA allocator's peak on a GPU (reset by the caller), the
    process's maximum resident set on a CPU (never reset: it only grows)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _phase(device) -> float:
    """Start a timed phase: the GPU's peak counter reset, its queue drained; the start time."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    return time.perf_counter()


def _seconds(device, t0: float) -> float:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def width_layers(editor: str, n_layers: int) -> dict:
    """The edited layer(s) at GPT-J's places, kept below the last layer: ROME's layer 5, MEMIT's
    3-8 (on a shallow model, the layers that fit, at least one)."""
    if editor == "rome":
        return {"layer": min(5, n_layers - 2)}
    fit = tuple(l for l in GPTJ_MEMIT_LAYERS if l < n_layers - 1)
    return {"layers": fit or (max(0, n_layers - 2),)}


def _one_solve(model, editor: str, C: torch.Tensor, layer: int) -> None:
    """The editor's update of one layer from a random key and value against ``C`` (ROME's
    rank-one C⁻¹k, MEMIT's (λC + kᵀk)⁻¹kᵀr): the float64 solve every edit makes per layer."""
    from drift.editors.rome import rank_one_delta
    from drift.editors.spread import least_squares_delta

    d_mlp, d_model = model.cfg.d_mlp, model.cfg.d_model
    k = torch.randn(d_mlp, device=C.device)
    v = torch.randn(d_model, device=C.device)
    if editor == "rome":
        rank_one_delta(model.weight("mlp_out", layer).detach(), C, k, v)
    else:
        least_squares_delta(k[None], v[None], C, 15000.0)


def bench_width(args) -> None:
    """One edit at GPT-J-6B's width (see the module docstring). A random model's key statistics
    and prefixes go to a temporary cache (a GiB a layer), removed at the end, not the user's."""
    import os
    import shutil
    import tempfile

    cache = tempfile.mkdtemp(prefix="drift-bench-width-")
    os.environ["DRIFT_CACHE"] = cache
    try:
        _width(args)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def _width(args) -> None:
    import warnings

    from transformers import GPTJConfig

    from drift.data import load_cases
    from drift.editors import get_compute
    from drift.editors.context import prefix_groups
    from drift.editors.memit import preset as memit_preset
    from drift.editors.rome import preset as rome_preset
    from drift.editors.stats import DEFAULT_SEQ_LEN, default_sequences, key_second_moment
    from drift.model.loading import as_dtype
    from drift.model.tiny import random_model
    from drift.util.runtime import configure_threads

    configure_threads()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    n_layers = args.layers or (28 if str(device).startswith("cuda") else 4)
    dtype = as_dtype(args.dtype)
    t0 = _phase(device)
    config = GPTJConfig(n_layer=n_layers, tie_word_embeddings=False, **GPTJ_SHAPE)
    model = random_model(config, dtype=dtype, device=device, name=f"gptj-6b-shape-{n_layers}l-{args.dtype}")
    build_s, build_peak = _seconds(device, t0), peak_gib(device)
    weights = sum(p.numel() * p.element_size() for p in model.hooked.parameters()) / 2**30
    where = width_layers(args.editor, n_layers)
    layers = [where["layer"]] if "layer" in where else list(where["layers"])
    hp = (rome_preset if args.editor == "rome" else memit_preset)(model)
    print(
        f"width: GPT-J-6B's shape, {n_layers} layers, random weights, {args.dtype} on {device} "
        f"({torch.get_num_threads()} threads): {weights:.2f} GiB of weights; {args.editor} at "
        f"layers {layers}, {args.steps} passes"
    )
    print(f"  build {build_s:6.1f} s   peak {build_peak:6.2f} GiB")
    t0 = _phase(device)
    groups = prefix_groups(model, hp.context, hp.n_prefixes)  # sampled once, then cached
    print(f"  context prefixes ({sum(map(len, groups))} prompts) sampled {_seconds(device, t0):6.1f} s")
    texts = tuple(default_sequences(model, n_seq=args.stats_texts, seq_len=args.stats_tokens))
    cut = min(DEFAULT_SEQ_LEN, model.cfg.n_ctx)  # what the editor cuts each text to, as here
    n_tokens = sum(min(len(model.encode(t)), cut) - 1 for t in texts)
    t0 = _phase(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fewer than 10 × d_mlp.*")  # timing only
        C = key_second_moment(model, layers, texts)[layers[-1]]  # the entry the edit then reads
    stats_s, stats_peak = _seconds(device, t0), peak_gib(device)
    full = stats_s * 102_200 / n_tokens
    print(
        f"  key statistics of {len(layers)} layer(s) from {n_tokens} tokens {stats_s:6.1f} s   peak "
        f"{stats_peak:6.2f} GiB   (drift's 102,200 tokens: ≈ {full:.0f} s, computed once and cached)"
    )
    t0 = _phase(device)
    _one_solve(model, args.editor, C, layers[-1])
    solve_s = _seconds(device, t0)
    print(f"  one layer's solve against C ({C.shape[0]}²) alone {solve_s:6.1f} s")
    del C
    compute = get_compute(
        args.editor, steps=args.steps, early_stop=0.0, stats_texts=texts, **where
    )  # early stop off: every pass runs
    case = load_cases("builtin")[0]
    t0 = _phase(device)
    edit = compute(model, case)
    edit_s, edit_peak = _seconds(device, t0), peak_gib(device)
    passes = len(edit.info["losses"])
    rest = edit_s - len(layers) * solve_s  # the δ optimisation, reading keys and C
    print(
        f"  {args.editor} edit {edit_s:6.1f} s ({len(layers)} solve(s) and {passes} passes: "
        f"≈ {rest:.1f} s besides the solves)   peak {edit_peak:6.2f} GiB"
    )
    saved = [model.weight(d.which, d.layer).clone() for d in edit.deltas]
    t0 = _phase(device)
    with edit.applied(model):
        model.target_prob(case.prompt, case.o_edit)  # one scored forward with the edit in place
    exact = all(torch.equal(model.weight(d.which, d.layer), w) for d, w in zip(edit.deltas, saved))
    print(f"  apply, score, remove {_seconds(device, t0):6.2f} s   restored bit for bit: {exact}")
    if not exact:
        sys.exit("the edit was not removed exactly")


def bench_gemm(args) -> None:
    """Matrix-product rate of this CPU, one thread, at the shapes of a ROME step on the default
    model (``rows`` × 576 times 576 × 1536, and back), float32 against bfloat16, for 1, 2, 4 and 8
    cases' rows: whether putting more cases' rows in one product makes it run faster."""
    torch.set_num_threads(1)
    print(
        f"{'rows':>6} {'cases':>6} "
        + " ".join(f"{f'{d} {s}':>18}" for d in ("fp32", "bf16") for s in ("576→1536", "1536→576"))
    )
    for cases in (1, 2, 4, 8):
        rows = args.rows * cases
        rates = []
        for dtype in (torch.float32, torch.bfloat16):
            for k, n in ((576, 1536), (1536, 576)):
                a, b = torch.randn(rows, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
                flop = 2 * rows * k * n
                reps = max(3, int(2e10 / flop))
                for _ in range(2):
                    a @ b
                best = float("inf")
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    for _ in range(reps):
                        a @ b
                    best = min(best, (time.perf_counter() - t) / reps)
                rates.append(flop / best / 1e9)
        print(f"{rows:>6} {cases:>6} " + " ".join(f"{r:>13.1f} GF/s" for r in rates))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="which", required=True)
    ev = sub.add_parser("eval", help="batched evaluation vs a per-prompt loop")
    ev.add_argument("--cases", type=int, default=100)
    O.add_data(ev, default=None, with_limit=False, default_help="the shared dev set, else builtin")
    O.add_model(ev, device=False, dtype=False)
    ro = sub.add_parser("rome", help="ROME target optimisation vs a naive per-prompt loop")
    ro.add_argument("--edits", type=int, default=3)
    ro.add_argument("--steps", type=int, default=20)
    ro.add_argument("--skip-naive", action="store_true", help="time drift with and without the prefix only")
    O.add_data(ro, with_limit=False)
    O.add_model(ro, device=False, dtype=False)
    sw = sub.add_parser(
        "patch-scan", aliases=["sweep"], help="the patch scan vs one full forward per state (alias: sweep)"
    )
    sw.add_argument("--layers", type=int, default=10)
    O.add_model(sw, device=False, dtype=False)
    sa = sub.add_parser("sadr", help="ROME with and without SADR, same steps")
    sa.add_argument("--edits", type=int, default=3)
    sa.add_argument("--steps", type=int, default=20)
    O.add_model(sa, device=False, dtype=False)
    ba = sub.add_parser("batch", help="ROME (± SADR) edits batched vs one case at a time")
    ba.add_argument("--cases", type=int, default=8)
    ba.add_argument("--chunk", type=int, default=4)
    ba.add_argument("--steps", type=int, default=20, help="ROME's steps (default 20)")
    ba.add_argument("--sadr-steps", type=int, default=20, help="ROME+SADR's steps (default 20)")
    ba.add_argument("--gamma", type=float, default=1e-2, help="SADR's γ (default 1e-2)")
    ba.add_argument("--no-sadr", action="store_true", help="ROME only")
    O.add_data(ba, default=None, with_limit=False, default_help="the shared dev set, else builtin")
    O.add_model(ba, device=False, dtype=False)
    pe = sub.add_parser("peer", help="drift's ROME vs the paper's own code, side by side")
    pe.add_argument("--reference", required=True, help="a checkout of the reference (scripts/setup-peer.sh)")
    pe.add_argument("--cases", type=int, default=4)
    O.add_data(pe, default=None, with_limit=False, default_help="the shared dev set, else builtin")
    pe.add_argument("--steps", type=int, default=None, help="passes (default: the preset's 20)")
    pe.add_argument("--gamma", type=float, default=0.0, help="SADR's γ on both sides (0: plain ROME)")
    pe.add_argument("--flops", action="store_true", help="GFLOP per optimisation step of each side instead")
    pe.add_argument("--profile", action="store_true", help="then profile drift on the longest target")
    pe.add_argument("--profile-rows", type=int, default=25)
    pe.add_argument("--peer-python", default=None, help="default: .venv-peer/bin/python")
    O.add_model(pe, device=False, dtype=False)  # a local Hugging Face folder here (default: drift's SmolLM2)
    ry = sub.add_parser("ray", help="a 4-run sweep: in this process, on 1 Ray worker, on N")
    ry.add_argument("--cases", type=int, default=6)
    ry.add_argument("--steps", type=int, default=5, help="ROME steps of the two edited runs (default 5)")
    ry.add_argument("--chunk", type=int, default=3)
    ry.add_argument("--workers", type=int, default=2)
    O.add_data(ry, with_limit=False)
    O.add_model(ry, device=False, dtype=False)
    wi = sub.add_parser("width", help="one edit at GPT-J-6B's width: random weights, seconds, peak memory")
    wi.add_argument("--layers", type=int, default=None, help="layers (default: 28 on a GPU, 4 on a CPU)")
    wi.add_argument("--editor", choices=["rome", "memit"], default="rome")
    wi.add_argument("--steps", type=int, default=3, help="passes of the δ optimisation (default 3)")
    wi.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    wi.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    wi.add_argument("--stats-texts", type=int, default=16, help="key-statistics texts (default 16)")
    wi.add_argument("--stats-tokens", type=int, default=256, help="words a text (default 256)")
    ge = sub.add_parser("gemm", help="this CPU's matrix-product rate at a ROME step's shapes, fp32 vs bf16")
    ge.add_argument(
        "--rows", type=int, default=308, help="one case's rows (default 308: 22 prompts × 14 columns)"
    )
    ge.add_argument("--repeats", type=int, default=5, help="timed repeats; the best is kept (default 5)")
    args = parser.parse_args()
    benches = {
        "gemm": bench_gemm,
        "eval": bench_eval,
        "width": bench_width,
        "batch": bench_batch,
        "peer": bench_peer,
        "rome": bench_rome,
        "patch-scan": bench_patch_scan,
        "sweep": bench_patch_scan,  # the older name of patch-scan
        "sadr": bench_sadr,
        "ray": bench_ray,
    }
    benches[args.which](args)


if __name__ == "__main__":
    main()
