"""Which text ROME's key statistics C come from, measured: the same cases edited with C from four
corpora, scored with ``drift.evaluation.evaluate.evaluate`` (no fluency), and the Cs and updates compared.

Variants (each changes one thing against ``novels``):

- ``novels``: today's default, 200 windows of 512 tokens of the public-domain novels, position 0
  of each left out (102,200 tokens).
- ``novels-pos0``: the same texts with position 0 kept (``stats_skip_first=False``), as the
  reference code counts every position.
- ``sampled``: ``--sampled-texts`` texts of ``--sampled-tokens`` tokens the model writes itself
  (``drift.editors.stats.sampled_corpus``: seeded top-50 sampling from generic openings),
  position 0 left out. Sampling 100k tokens costs too much on a CPU, so it is smaller than the
  default; hence
- ``novels-small``: the first ``--sampled-texts`` windows of the novels (the same token count as
  ``sampled``), position 0 left out: the fair comparison for ``sampled``.

ROME's δ optimisation does not read C (only the rank-one update does), so each case's δ is
optimised once and the four variants' updates are built from it: every variant's edit is exactly
what ``compute_rome_many`` returns with its C, at a quarter of the cost. Cases go in chunks of
``--chunk``, every variant on a chunk before the next, so an interrupted run has the same cases
in every variant; each variant's finished cases are logged as they finish
(``results/stats_choice/VARIANT.json.partial.jsonl``, the pattern of ``python -m drift eval``) and
the same command resumes. When all are done it writes ``VARIANT.json`` (config, summary, per-case
rows with ‖ΔW‖ and ‖ΔW‖/‖W‖) and ``comparison.json``: the Cs against each other, per case the
cosine and relative difference of ΔW against ``novels``, and the paired metric differences.
The rank-one factors of each ΔW go to ``results/stats_choice/deltas/`` (git-ignored ``.pt``).

    nice -n 10 env DRIFT_THREADS=1 .venv/bin/python analyses/stats_choice.py \\
        --data /work/shared/data/counterfact-merged-dev.json --limit 1178 --shard 10/50
    .venv/bin/python analyses/stats_choice.py --report     # the tables of what has finished
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drift.cli.runs import RecordLog, read_any  # noqa: E402
from drift.cli.spec import digest_of, file_or_name
from drift.data import dev_set_or_builtin  # noqa: E402
from drift.evaluation.compare import paired_difference  # noqa: E402

OUT = ROOT / "results" / "stats_choice"
VARIANTS = ("novels", "novels-pos0", "sampled", "novels-small")
METRICS = ("ES", "PS", "NS", "RS", "DNS", "EM", "PM", "NM", "RM", "DNM")
POOL = "prompts"


def stats_texts(model, variant: str, n_texts: int, n_tokens: int) -> tuple[tuple[str, ...] | None, bool]:
    """``(stats_texts, skip_first)`` of a variant; ``None``: the default corpus."""
    from drift.editors.stats import default_sequences, sampled_corpus

    if variant == "novels":
        return None, True
    if variant == "novels-pos0":
        return None, False
    if variant == "sampled":
        return tuple(sampled_corpus(model, n_texts=n_texts, n_tokens=n_tokens, seed=0)), True
    if variant == "novels-small":
        return tuple(default_sequences(model, n_seq=n_texts)), True
    raise ValueError(variant)


def token_count(model, texts, skip_first: bool) -> int:
    """The tokens C is averaged over (as ``drift.editors.stats._accumulate`` counts them)."""
    from drift.editors.stats import DEFAULT_SEQ_LEN, default_sequences

    texts = texts if texts is not None else default_sequences(model)
    n = min(DEFAULT_SEQ_LEN, model.cfg.n_ctx)
    return sum(max(0, min(len(model.encode(t)), n) - int(skip_first)) for t in texts)


class SharedTargets:
    """``drift.editors.rome.optimise_many`` remembered per batch of cases: δ does not depend on C,
    so the variants' edits of one batch share one optimisation (the result is the same object)."""

    def __init__(self):
        import drift.editors.rome as rome

        self.rome, self.inner, self.memo = rome, rome.optimise_many, {}

    def __call__(self, model, cases, *args, **kwargs):
        key = (tuple(c.case_id for c in cases), repr(args[0]), repr(sorted(kwargs.items())))
        if key not in self.memo:
            self.memo = {key: self.inner(model, cases, *args, **kwargs)}  # one batch at a time
        return self.memo[key]

    def __enter__(self):
        self.rome.optimise_many = self
        return self

    def __exit__(self, *exc):
        self.rome.optimise_many = self.inner


class Recording:
    """An editor as ``evaluate`` takes it that keeps each case's computed edit by case id."""

    def __init__(self, applied):
        self.inner, self.edits = applied.compute, {}
        self.compute = self  # evaluate batches through ``edit.compute.many``

    def many(self, model, cases):
        edits = self.inner.many(model, cases)
        self.edits.update({c.case_id: e for c, e in zip(cases, edits)})
        return edits

    @contextlib.contextmanager
    def __call__(self, model, case):
        edit = self.many(model, [case])[0]
        with edit.applied(model):
            yield edit


def factors(delta: torch.Tensor) -> dict:
    """ΔW = a ⊗ b, ``b`` of unit norm (ROME's update has rank one)."""
    U, S, Vh = torch.linalg.svd(delta.double(), full_matrices=False)
    return {"a": U[:, 0] * S[0], "b": Vh[0], "rest": float(S[1:].norm() / S[0])}


def cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x.flatten() @ y.flatten()) / (x.norm() * y.norm()))


def main(argv=None) -> None:
    from drift.cli import options as O

    ap = O.parser("analyses/stats_choice.py", __doc__.split("\n")[0])
    O.add_data(ap, default=dev_set_or_builtin(), limit=1178, shard=True)
    ap.set_defaults(shard="10/50")
    O.add_model(ap, device=False, dtype=False)
    ap.add_argument("--sampled-texts", type=int, default=50)
    ap.add_argument("--sampled-tokens", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=4, help="cases whose δ are optimised together")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    O.add_output(ap, kind="folder", default=str(OUT), restart=False)
    ap.add_argument("--report", action="store_true", help="only print the tables of what has finished")
    args = ap.parse_args(argv)
    out = Path(args.out)
    variants = [v for v in args.variants.split(",") if v]
    if args.report:  # from the logs, the saved updates and the cached Cs: no model needed
        from drift.util.store import CorruptCacheError, save_json

        configs = {v: read_any(path)[0] for v in variants if (path := result_path(out, v))}
        if len(configs) == len(variants):
            first = rows_of(out, variants[0])
            layer = int(next(iter(first[0]["edit"]["relative_change"])).split("@")[1])  # "mlp_out@4"
            ids = [r["case_id"] for r in first]
            try:
                Cs = {v: cached_C(c, layer) for v, c in configs.items()}
            except CorruptCacheError as e:  # a fresh machine: the variants' Cs were never computed here
                print(f"stats_choice: {e}; comparison.json kept as it is", file=sys.stderr)
            else:
                save_json(
                    out / "comparison.json",
                    compare_all(out, variants, Cs, {v: c["stats"] for v, c in configs.items()}, ids),
                )
        print(report(out, variants))
        return

    import drift
    from drift.cli.runs import chunks
    from drift.data import load_cases
    from drift.editors import get_editor
    from drift.editors.stats import CORPUS_VERSION, corpus_id, default_sequences, key_second_moment
    from drift.evaluation.evaluate import EvalSpec, evaluate
    from drift.util.runtime import share
    from drift.util.store import save_object

    cases = share(load_cases(args.data, limit=args.limit), args.shard)
    model = drift.load_model(args.model)
    from drift.editors.rome import preset

    hp0 = preset(model)
    print(f"{len(cases)} cases ({args.limit} first, shard {args.shard}); ROME layer {hp0.layer}", flush=True)

    setup, Cs = {}, {}
    for v in variants:
        texts, skip = stats_texts(model, v, args.sampled_texts, args.sampled_tokens)
        Cs[v] = key_second_moment(model, [hp0.layer], texts, skip_first=skip, verbose=True)[
            hp0.layer
        ].double()
        shown = texts if texts is not None else default_sequences(model)
        setup[v] = {
            "texts": v.replace("-pos0", ""),
            "sequences": len(shown),
            "skip_first": skip,
            "corpus": corpus_id(shown),
            "tokens": token_count(model, texts, skip),
        }
        print(v, setup[v], flush=True)

    base = {
        "analysis": "stats_choice",
        "data": file_or_name(args.data),
        "data_sha256": digest_of(args.data),
        "limit": args.limit,
        "shard": args.shard,
        "editor": "rome",
        "model": model.name,
        "fluency": False,
        "scoring": "mean",
        "pool": POOL,
        "sampling": CORPUS_VERSION,
    }
    logs = {v: RecordLog(out / f"{v}.json.partial.jsonl", base | {"stats": setup[v]}) for v in variants}
    editors = {}
    for v in variants:
        texts, skip = stats_texts(model, v, args.sampled_texts, args.sampled_tokens)
        editors[v] = get_editor("rome", stats_texts=texts, stats_skip_first=skip)
    with contextlib.ExitStack() as stack, SharedTargets():
        for log in logs.values():
            if (out / f"{Path(log.path).name.removesuffix('.partial.jsonl')}").exists():
                continue
            stack.enter_context(log)
        for chunk in chunks(cases, args.chunk):
            for v in variants:
                log = logs[v]
                todo = log.remaining(chunk) if log.path.exists() else []
                if not todo:
                    continue
                rec = Recording(editors[v])

                def keep(row, v=v, rec=rec, log=log):
                    edit = rec.edits[row["case_id"]]
                    d = edit.deltas[0].delta
                    row["edit"]["delta_norm"] = float(d.double().norm())
                    f = factors(d)
                    row["edit"]["rank_one_residual"] = f.pop("rest")
                    # written whole (temp file + rename) before the row that points at it
                    save_object(out / "deltas" / v / f"{row['case_id']}.pt", f)
                    log.append(row)
                    m = row["metrics"]
                    print(
                        v,
                        row["case_id"],
                        " ".join(f"{k}={m[k]:.0f}" for k in ("ES", "PS", "NS", "RS", "DNS") if k in m),
                        f"|dW|/|W|={row['edit']['relative_change']}",
                        flush=True,
                    )

                evaluate(model, todo, rec, EvalSpec(fluency=False, edit_batch=len(todo)), on_case=keep)
        ids = [c.case_id for c in cases]
        for v, log in logs.items():
            final = out / f"{v}.json"
            if not final.exists() and log.path.exists() and not log.remaining(cases):
                log.finish(final, ids, POOL)
    comparison = compare_all(out, variants, Cs, setup, ids)
    from drift.util.store import save_json

    save_json(out / "comparison.json", comparison)
    print(report(out, variants))


def result_path(out: Path, v: str) -> Path | None:
    for path in (out / f"{v}.json", out / f"{v}.json.partial.jsonl"):
        if path.exists():
            return path
    return None


def rows_of(out: Path, v: str) -> list[dict]:
    path = result_path(out, v)
    return read_any(path)[1] if path else []


def cached_C(config: dict, layer: int) -> torch.Tensor:
    """A variant's C at ``layer`` as ``key_second_moment`` cached it (the default text length)."""
    from drift.editors.stats import DEFAULT_SEQ_LEN, _slug
    from drift.util.store import cache_root, load_tensors

    st = config["stats"]
    tag = f"{st['corpus']}-t{DEFAULT_SEQ_LEN}" + ("-p1" if st["skip_first"] else "")
    path = cache_root() / "stats" / _slug(config["model"]) / f"mlp_key-L{layer}-{tag}.safetensors"
    return load_tensors(path)[0]["C"].double()


def compare_all(out: Path, variants, Cs, setup, ids) -> dict:
    """C against C, and per case ΔW of each variant against ``novels``. A case whose saved updates
    are not here (``deltas/`` is not committed) keeps its row of the comparison already written.
    Its configuration names the variants' files it compares and what computed it (provenance)."""
    from drift.cli.spec import provenance

    ref = variants[0]
    data = read_any(result_path(out, ref))[0].get("data") if result_path(out, ref) else None
    config = {"from": [f"{v}.json" for v in variants], "provenance": provenance(data=data)}
    result = {"config": config, "reference": ref, "stats": setup, "C": {}, "cases": []}
    before = {}
    if (out / "comparison.json").is_file():
        before = {r["case_id"]: r for r in json.loads((out / "comparison.json").read_text())["cases"]}
    for v in variants[1:]:
        d = Cs[v] - Cs[ref]
        result["C"][v] = {
            "relative_difference": float(d.norm() / Cs[ref].norm()),
            "cosine": cosine(Cs[v], Cs[ref]),
            "trace_ratio": float(Cs[v].trace() / Cs[ref].trace()),
        }
    for cid in ids:
        paths = {v: out / "deltas" / v / f"{cid}.pt" for v in variants}
        if not paths[ref].exists():
            if cid in before:
                result["cases"].append(before[cid])
            continue
        r = torch.load(paths[ref])
        W_ref = torch.outer(r["a"], r["b"])
        row = {"case_id": cid}
        for v in variants[1:]:
            if not paths[v].exists():
                continue
            o = torch.load(paths[v])
            W = torch.outer(o["a"], o["b"])
            row[v] = {
                "cos_dW": cosine(W, W_ref),
                "rel_diff_dW": float((W - W_ref).norm() / W_ref.norm()),
                "norm_ratio": float(W.norm() / W_ref.norm()),
                "cos_key_side": cosine(o["a"], r["a"]),
                "cos_value_side": cosine(o["b"], r["b"]),
            }
        result["cases"].append(row)
    return result


def report(out: Path, variants) -> str:
    """Markdown: per variant n, the metrics (mean over pooled prompts, as eval's summary), mean
    ‖ΔW‖/‖W‖, and paired per-case differences against the first variant."""
    from drift.evaluation.metrics import summarise

    rows = {v: rows_of(out, v) for v in variants}
    ref = variants[0]
    common = set.intersection(*(set(r["case_id"] for r in rows[v]) for v in variants)) if rows[ref] else set()
    lines = [f"cases finished in every variant: {len(common)}", ""]
    lines.append("| variant | tokens | n | " + " | ".join(METRICS) + " | ‖ΔW‖/‖W‖ |")
    lines.append("|---" * (len(METRICS) + 4) + "|")
    comp = json.loads((out / "comparison.json").read_text()) if (out / "comparison.json").exists() else {}
    for v in variants:
        mine = [r for r in rows[v] if r["case_id"] in common]
        if not mine:
            continue
        s = summarise([r["metrics"] for r in mine], POOL)
        rel = [next(iter(r["edit"]["relative_change"].values())) for r in mine]
        tokens = comp.get("stats", {}).get(v, {}).get("tokens", "?")
        cells = [
            f"{s[m]:.1f}" + (f" ({s[m + '_n']})" if i < 5 else "") if m in s else "—"
            for i, m in enumerate(METRICS)
        ]
        lines.append(
            f"| {v} | {tokens} | {len(mine)} | " + " | ".join(cells) + f" | {sum(rel) / len(rel):.4f} |"
        )
    lines += ["", "paired per-case differences against " + ref + " (mean, better/worse cases):", ""]
    lines.append("| variant | " + " | ".join(METRICS) + " | ‖ΔW‖/‖W‖ | cos ΔW | rel. diff ΔW |")
    lines.append("|---" * (len(METRICS) + 4) + "|")
    by_case = {r["case_id"]: r for r in comp.get("cases", [])}
    for v in variants[1:]:
        a = [r for r in rows[ref] if r["case_id"] in common]
        b = [r for r in rows[v] if r["case_id"] in common]
        if not b:
            continue
        cells = []
        for m in METRICS:
            p = paired_difference(a, b, m)
            cells.append(f"{p.mean:+.1f} ({p.better}/{p.worse})" if p.n else "—")  # magnitudes ×100
        ra = {r["case_id"]: next(iter(r["edit"]["relative_change"].values())) for r in a}
        rb = {r["case_id"]: next(iter(r["edit"]["relative_change"].values())) for r in b}
        dn = [rb[c] - ra[c] for c in common]
        cos = [by_case[c][v]["cos_dW"] for c in common if v in by_case.get(c, {})]
        rd = [by_case[c][v]["rel_diff_dW"] for c in common if v in by_case.get(c, {})]
        cosc = f"{sum(cos) / len(cos):.3f} [{min(cos):.3f}, {max(cos):.3f}]" if cos else "—"
        rdc = f"{sum(rd) / len(rd):.3f}" if rd else "—"
        lines.append(
            f"| {v} | " + " | ".join(cells) + f" | {sum(dn) / len(dn):+.4f} ({sum(x > 0 for x in dn)}/"
            f"{sum(x < 0 for x in dn)}) | {cosc} | {rdc} |"
        )
    if comp.get("C"):
        lines += ["", "| C of | ‖C − C_ref‖/‖C_ref‖ | cos(C, C_ref) | tr C / tr C_ref |", "|---|---|---|---|"]
        for v, c in comp["C"].items():
            lines.append(
                f"| {v} | {c['relative_difference']:.3f} | {c['cosine']:.4f} | {c['trace_ratio']:.3f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
