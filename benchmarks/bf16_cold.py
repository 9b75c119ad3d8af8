"""The first ROME edit of the default model from an empty cache, float32 against bf16, and what a
separate bf16 key statistic changes. Results go in BENCHMARKS.md ("bf16 from a cold cache").

    DRIFT_THREADS=1 python benchmarks/bf16_cold.py [--subset 32] [--case 0]
    # or the two dtypes in two processes at once (CPU times are per process):
    DRIFT_THREADS=1 python benchmarks/bf16_cold.py --only fp32 --share fp32.pt &
    DRIFT_THREADS=1 python benchmarks/bf16_cold.py --only bf16 --share fp32.pt
    python benchmarks/bf16_cold.py --hash      # reading vs hashing the cached model's weights file
    python benchmarks/bf16_cold.py --only bf16 --cache DIR   # the edit alone, on a stopped run's cache

Times are CPU seconds of this one-threaded process (``time.process_time``: what it would take
alone on the machine, whatever else runs beside it) and wall seconds. Each dtype runs in a
fresh, empty cache (a temporary ``DRIFT_CACHE``; the converted model is
linked in from the usual cache, so conversion is not timed): its key statistics (ROME's layer,
the default 102k-token corpus), its context prefixes, then the edit itself, each timed. Then, on
the first ``--subset`` sequences of the corpus, C from three forwards: the float32 model, the bf16
model run in bf16 (what drift computed before), and the bf16 weights run in float32 (what drift
computes on a CPU now); their relative differences, and those of the ROME update of one case
solved with each (the same optimised target, only C differs). Prints one JSON line per part.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cold_cache() -> Path:
    if os.environ.get("DRIFT_BENCH_CACHE"):  # --cache: a cache a stopped run filled, reused as it is
        os.environ["DRIFT_CACHE"] = os.environ["DRIFT_BENCH_CACHE"]
        return Path(os.environ["DRIFT_CACHE"])
    from drift.util.store import cache_root

    models = cache_root() / "models"
    fresh = Path(tempfile.mkdtemp(prefix="drift-cold-"))
    if models.is_dir():
        (fresh / "models").symlink_to(models)
    os.environ["DRIFT_CACHE"] = str(fresh)
    return fresh


def first_edit(name, dtype: str, case, captured: dict) -> dict:
    import drift
    from drift.editors import rome
    from drift.editors.context import prefix_groups
    from drift.editors.stats import key_second_moment

    cold_cache()
    model = drift.load_model(name, dtype=dtype)
    hp = rome.preset(model)
    t0, c0 = time.perf_counter(), time.process_time()
    C = key_second_moment(model, [hp.layer], verbose=False)[hp.layer]
    t1, c1 = time.perf_counter(), time.process_time()
    prefix_groups(model, hp.context, hp.n_prefixes)
    t2, c2 = time.perf_counter(), time.process_time()
    real = rome._rome_edit

    def keep(model_, hp_, C_, res, *a):
        captured[dtype] = (model_, hp_, res)
        return real(model_, hp_, C_, res, *a)

    rome._rome_edit = keep
    try:
        edit = rome.compute_rome(model, case, hp)
    finally:
        rome._rome_edit = real
    t3, c3 = time.perf_counter(), time.process_time()
    captured[f"C-{dtype}"] = C
    return {
        "dtype": dtype,
        "cpu_s": {
            "key_statistics": round(c1 - c0, 1),
            "prefixes": round(c2 - c1, 1),
            "edit": round(c3 - c2, 1),
            "first_edit": round(c3 - c0, 1),
        },
        "wall_s": {
            "key_statistics": round(t1 - t0, 1),
            "prefixes": round(t2 - t1, 1),
            "edit": round(t3 - t2, 1),
            "first_edit": round(t3 - t0, 1),
        },
        "load_average": os.getloadavg()[0],
        "passes": len(edit.info["losses"]),
        "delta_norm": edit.info["delta_norm"],
    }


def subset_C(model, layer: int, texts, upcast: bool):
    from drift.editors.stats import _accumulate, upcast_weights

    ctx = upcast_weights(model) if upcast else None
    t0 = time.process_time()
    if ctx is not None:
        with ctx:
            sums, count = _accumulate(model, [layer], texts, min(512, model.cfg.n_ctx), 8, True)
    else:
        sums, count = _accumulate(model, [layer], texts, min(512, model.cfg.n_ctx), 8, True)
    return sums[layer] / count, time.process_time() - t0, count


def hash_rates(repeats: int = 3) -> None:
    """Best of ``repeats``: reading the default model's cached weights file alone, and reading it
    through XXH3-128 (drift's load-time check) and SHA-256 (its manifest's), in GB/s."""
    import hashlib

    import xxhash

    from drift.model.loading import packaged_model_folder

    path = packaged_model_folder() / "model.safetensors"
    size = path.stat().st_size
    for name, make in (("read", None), ("xxh3_128", xxhash.xxh3_128), ("sha256", hashlib.sha256)):
        best = float("inf")
        for _ in range(repeats):
            start, h = time.perf_counter(), make() if make else None
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    if h is not None:
                        h.update(chunk)
            best = min(best, time.perf_counter() - start)
        print(
            json.dumps(
                {"what": name, "bytes": size, "s": round(best, 3), "GB/s": round(size / best / 1e9, 2)}
            )
        )


def compare_only(name, case, n_seq: int) -> None:
    """C on the first ``n_seq`` corpus sequences from the three forwards, and what each gives the
    direction of a ROME update at the case's subject key: ΔW = u (v − v_a)ᵀ / (u · k), u = C⁻¹k,
    so for a fixed target the update's relative change is that of u / (u · k)."""
    import drift
    from drift.editors import rome
    from drift.editors.spread import ridged_system
    from drift.editors.stats import default_sequences

    m32 = drift.load_model(name, dtype="fp32")
    m16 = drift.load_model(name, dtype="bf16")
    layer = rome.preset(m32).layer
    texts = default_sequences(m32, seq_len=min(512, m32.cfg.n_ctx))[:n_seq]
    C32, s32, n = subset_C(m32, layer, texts, upcast=False)
    C16, s16, _ = subset_C(m16, layer, texts, upcast=False)
    C16w, s16w, _ = subset_C(m16, layer, texts, upcast=True)
    import torch

    prompt = case.prompt.replace("{}", case.subject) if "{}" in case.prompt else case.prompt
    tokens = torch.tensor([m32.encode(prompt)])
    k = m32.capture(tokens, "mlp_key", layer)[
        0, len(m32.encode(prompt.split(case.subject)[0] + case.subject)) - 1
    ]

    def u(C):
        x = torch.linalg.solve(ridged_system(C, 1.0), k.double())
        return x / (x @ k.double())

    def rel(a, b) -> float:
        return float((a.double() - b.double()).norm() / b.double().norm())

    print(
        json.dumps(
            {
                "tokens": n,
                "cpu_s": {
                    "fp32": round(s32, 1),
                    "bf16 forward": round(s16, 1),
                    "bf16 weights, fp32 forward": round(s16w, 1),
                },
                "C rel diff: bf16 forward vs bf16 weights fp32 forward": rel(C16, C16w),
                "C rel diff: bf16 forward vs fp32 model": rel(C16, C32),
                "C rel diff: bf16 weights fp32 forward vs fp32 model": rel(C16w, C32),
                "update rel diff: bf16 forward vs bf16 weights fp32 forward": rel(u(C16), u(C16w)),
                "update rel diff: bf16 forward vs fp32 model": rel(u(C16), u(C32)),
                "update rel diff: bf16 weights fp32 forward vs fp32 model": rel(u(C16w), u(C32)),
            }
        ),
        flush=True,
    )


def main() -> None:
    from drift.cli import options as O

    ap = argparse.ArgumentParser()
    ap.add_argument("--subset", type=int, default=32, help="sequences for the three-way C comparison")
    ap.add_argument("--case", type=int, default=0)
    O.add_model(ap, dtype=False, device=False)  # --model: the smoke test runs it on the tiny model
    ap.add_argument("--hash", action="store_true", help="only the hash rates of the cached weights")
    ap.add_argument("--compare-only", action="store_true", help="only the C comparison on --subset")
    ap.add_argument("--cache", help="reuse this cache (a stopped run's) and time the edits only")
    ap.add_argument("--only", choices=("fp32", "bf16"), help="one dtype (two processes in parallel)")
    ap.add_argument("--share", help="with --only: the file the fp32 process leaves its C and edit in")
    args = ap.parse_args()
    if args.hash:
        return hash_rates()
    import torch

    import drift
    from drift.data import load_cases
    from drift.editors import rome
    from drift.editors.stats import default_sequences

    case = load_cases("builtin")[args.case]
    if args.compare_only:
        return compare_only(args.model, case, args.subset)
    captured: dict = {}
    dtypes = ("fp32", "bf16") if args.only is None else (args.only,)
    if args.cache:
        os.environ["DRIFT_BENCH_CACHE"] = args.cache
    for dtype in dtypes:
        print(json.dumps(first_edit(args.model, dtype, case, captured)), flush=True)
    if args.cache:  # the edit alone (what a stopped run had cached is not timed again)
        return
    if "fp32" in captured:
        share = {"C": captured["C-fp32"], "delta": _fp32_delta(captured)}
        if args.share:
            torch.save(share, args.share)
        if args.only == "fp32":
            return
    m32 = drift.load_model(args.model, dtype="fp32")
    m16, hp, res = captured["bf16"]
    layer = hp.layer
    texts = default_sequences(m32, seq_len=min(512, m32.cfg.n_ctx))[: args.subset]
    C32, s32, n = subset_C(m32, layer, texts, upcast=False)
    C16, s16, _ = subset_C(m16, layer, texts, upcast=False)
    C16w, s16w, _ = subset_C(m16, layer, texts, upcast=True)

    def rel(a, b) -> float:
        return float((a.double() - b.double()).norm() / b.double().norm())

    print(
        json.dumps(
            {
                "subset_tokens": n,
                "cpu_s": {
                    "fp32": round(s32, 1),
                    "bf16 forward": round(s16, 1),
                    "bf16 weights, fp32 forward": round(s16w, 1),
                },
                "C rel diff: bf16 forward vs bf16 weights fp32 forward": rel(C16, C16w),
                "C rel diff: bf16 forward vs fp32 model": rel(C16, C32),
                "C rel diff: bf16 weights fp32 forward vs fp32 model": rel(C16w, C32),
            }
        ),
        flush=True,
    )

    def delta(C):
        site = ("mlp_out", layer)
        keys = res.keys[layer]
        W = m16.weight("mlp_out", layer).detach()
        return rome.rank_one_delta(W, C, keys.mean(0), res.v0[site] + res.deltas[site], keys[0], res.v0[site])

    print(
        json.dumps(
            {
                "edit rel diff (subset C): bf16 forward vs bf16 weights fp32 forward": rel(
                    delta(C16), delta(C16w)
                ),
                "edit rel diff (subset C): bf16 forward vs fp32 model": rel(delta(C16), delta(C32)),
            }
        ),
        flush=True,
    )
    if args.only == "bf16" and args.share:  # the fp32 process's C and edit, when it has finished
        while not Path(args.share).exists():
            time.sleep(10)
        time.sleep(2)
        share = torch.load(args.share)
    full32, full16 = share["C"], captured["C-bf16"]
    print(
        json.dumps(
            {
                "C rel diff (full corpus): bf16 weights fp32 forward vs fp32 model": rel(full16, full32),
                "edit rel diff (full C): bf16 weights fp32 forward vs fp32 model": rel(
                    delta(full16), delta(full32)
                ),
                "edit rel diff: bf16 edit vs fp32 edit (each its own everything)": rel(
                    delta(full16), share["delta"]
                ),
            }
        ),
        flush=True,
    )


def _fp32_delta(captured):
    from drift.editors import rome

    model, hp, res = captured["fp32"]
    site, keys = ("mlp_out", hp.layer), res.keys[hp.layer]
    W = model.weight("mlp_out", hp.layer).detach()
    C = captured["C-fp32"]
    return rome.rank_one_delta(W, C, keys.mean(0), res.v0[site] + res.deltas[site], keys[0], res.v0[site])


if __name__ == "__main__":
    main()
