"""SADR's tables and figures: the main paper's Table 3, Fig. 6 and Fig. 7 on one model.

    python analyses/sadr.py                                   # default model, built-in cases, ROME
    python analyses/sadr.py --editors rome,memit,pmet \
        --data ../shared/data/counterfact-merged-dev.json --limit 200
    python analyses/sadr.py --gamma 1e-2,1e-1 ...             # one Table 3 row per γ (the paper's scale)

- Table 3: None / editor / editor+SADR for each editor, ES PS NS RS DNS and Avg S with 95% CIs.
- Fig. 6: selective vs all heads over γ (first editor), RS, DNS and ES.
- Fig. 7: edit success (mean of EM and PM) against specificity (RM, DNM) for SADR's γ and for the
  editor's own knobs: optimisation steps, learning rate and ω.

Each configuration's summary is appended to ``OUT/sadr-runs.jsonl`` as it finishes, so an
interrupted run resumes where it stopped, down to the last finished case of the configuration it
was in (``OUT/.partial-KEY.jsonl``; ``--restart`` starts over). ``--part I/N`` splits every
configuration's cases into chunks of ``--chunk`` and evaluates only every N-th chunk (from the
I-th), drawing nothing, so N processes or GPUs can share the work, each with its own ``--out``;
then ``--join DIR1 DIR2 ...`` (without ``--part``) takes their finished cases in and draws.
Writes ``OUT/*.html``, ``OUT/*.png``, ``OUT/sadr.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import drift  # noqa: E402
from drift.data import load_cases  # noqa: E402
from drift.editors import get_editor  # noqa: E402
from drift.editors.sadr import SADR, paper_setting  # noqa: E402
from drift.editors.stats import CORPUS_VERSION  # noqa: E402
from drift.evaluate import evaluate  # noqa: E402
from drift.metrics import DEFAULT_POOL, DEFAULT_SCORING, summarise  # noqa: E402
from drift.runtime import share  # noqa: E402
from drift.store import append_record, read_records  # noqa: E402

TABLE = ["ES", "PS", "NS", "RS", "DNS", "AvgS"]


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--data", default="builtin")
    ap.add_argument("--limit", type=int, default=8, help="cases for Table 3 (default 8)")
    ap.add_argument(
        "--sweep-limit", type=int, default=4, help="cases per point of Fig. 6 and Fig. 7 (default 4)"
    )
    ap.add_argument("--editors", default="rome", help="comma-separated editors for Table 3 (default rome)")
    ap.add_argument(
        "--gamma",
        default=None,
        metavar="G[,G...]",
        help="SADR γ for Table 3, one row per value (default: the paper's per editor, "
        "drift.editors.sadr.PAPER_SETTINGS)",
    )
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps for the SADR runs (default: the paper's per editor, ROME 80, MEMIT 20, PMET 40)",
    )
    ap.add_argument("--gammas", default="1e-3,1e-2,1e-1", help="γ grid of Fig. 6/7")
    ap.add_argument("--knob-steps", default="20,40,80", help="ROME steps grid of Fig. 7")
    ap.add_argument("--knob-lr", default="0.05,0.2,0.5", help="ROME learning-rate grid of Fig. 7")
    ap.add_argument("--knob-kl", default="0.0625,1,4", help="ROME ω grid of Fig. 7")
    ap.add_argument("--no-figures", action="store_true", help="Table 3 only")
    ap.add_argument(
        "--restart", action="store_true", help="ignore finished configurations in OUT/sadr-runs.jsonl"
    )
    ap.add_argument("--out", default=str(ROOT / "figures" / "sadr"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--device", default=None, help="torch device, e.g. cuda (default: cuda when available, else cpu)"
    )
    ap.add_argument(
        "--part",
        default=None,
        metavar="I/N",
        help="evaluate only chunks I, I+N, I+2N, ... of the plan's cases and draw nothing",
    )
    ap.add_argument("--chunk", type=int, default=10, help="cases per chunk with --part (default 10)")
    ap.add_argument(
        "--join",
        nargs="*",
        default=[],
        metavar="DIR",
        help="first take in the finished work of these --part folders",
    )
    return ap.parse_args(argv)


class Runs:
    """Configurations evaluated so far, keyed by what determines their result; saved as they end."""

    def __init__(self, path: Path, restart: bool):
        self.path = path
        if restart:
            path.unlink(missing_ok=True)
            for work in path.parent.glob(".partial-*.jsonl"):
                work.unlink()
        self.done: dict[str, dict] = {
            k: rec["summary"] for k, rec in read_records(path).items() if "summary" in rec
        }

    @staticmethod
    def config(model, cases, editor: str, seed: int, overrides: dict) -> tuple[str, dict]:
        """The configuration's key and description: what determines its result."""
        cfg = {
            "model": model.name,
            "cases": [c.case_id for c in cases],
            "editor": editor,
            "seed": seed,
            "overrides": {k: repr(v) for k, v in sorted(overrides.items())},
            "corpus": CORPUS_VERSION,
            "scoring": DEFAULT_SCORING,
            "pool": DEFAULT_POOL,
        }  # drift.metrics' defaults
        return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16], cfg

    def work(self, key: str) -> Path:
        """Finished cases of a configuration not yet summarised, one JSON line each."""
        return self.path.parent / f".partial-{key}.jsonl"

    def evaluate(self, model, cases, editor: str, seed: int, overrides: dict, key: str) -> dict:
        """Evaluate the ``cases`` of configuration ``key`` not yet in its partial file; all its rows."""
        work = self.work(key)
        finished = {r["case_id"]: r for r in read_records(work).values()}
        todo = [c for c in cases if c.case_id not in finished]
        if todo:
            edit = get_editor(editor, **overrides) if editor != "none" else None
            evaluate(
                model,
                todo,
                edit=edit,
                fluency=False,
                seed=seed,
                progress=False,
                on_case=lambda r: append_record(work, r | {"key": str(r["case_id"])}),
            )
        return {r["case_id"]: r for r in read_records(work).values()}

    def get(self, model, cases, editor: str, label: str, seed: int, **overrides) -> dict:
        key, cfg = self.config(model, cases, editor, seed, overrides)
        if key not in self.done:
            finished = self.evaluate(model, cases, editor, seed, overrides, key)
            summary = summarise([finished[c.case_id]["metrics"] for c in cases])
            self.done[key] = summary
            append_record(self.path, {"key": key, "label": label, "config": cfg, "summary": summary})
            self.work(key).unlink(missing_ok=True)
        return self.done[key]

    def join(self, folders: list[Path]) -> None:
        """Take in the finished configurations and finished cases of other folders (``--part`` runs)."""
        for folder in folders:
            if not (Path(folder) / self.path.name).exists() and not list(
                Path(folder).glob(".partial-*.jsonl")
            ):
                raise ValueError(f"--join: {folder} holds no {self.path.name} nor partial results")
            for key, rec in read_records(Path(folder) / self.path.name).items():
                if key not in self.done and "summary" in rec:
                    self.done[key] = rec["summary"]
                    append_record(self.path, rec)
            for part in Path(folder).glob(".partial-*.jsonl"):
                mine = read_records(self.path.parent / part.name)
                for key, row in read_records(part).items():
                    if key not in mine:
                        append_record(self.path.parent / part.name, row)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _sadr(gamma: float, heads: str = "selective") -> dict:
    return {"extra_terms": (SADR(gamma, heads),)}


def main(argv=None) -> dict:
    args = parse(argv)
    t0 = time.time()
    out = Path(args.out)
    share([], args.part, option="--part")  # a malformed --part fails before the model loads
    model = drift.load_model(args.model, device=args.device)
    cases = load_cases(args.data, limit=args.limit)
    sweep_cases = cases[: args.sweep_limit]
    runs = Runs(out / "sadr-runs.jsonl", args.restart)
    runs.join([Path(f) for f in args.join])
    editors = [e for e in args.editors.split(",") if e]
    for e in editors:
        get_editor(e)  # unknown names fail here, before any work

    def steps(e: str) -> dict:
        return {"steps": args.steps or paper_setting(e)["steps"]}

    plan: list[tuple[str, str, list, dict]] = [("None", "none", cases, {})]
    for e in editors:
        gs = _floats(args.gamma) if args.gamma else [paper_setting(e)["gamma"]]
        plan += [(e.upper(), e, cases, {})] + [
            (f"{e.upper()}+SADR (γ={g:g})", e, cases, _sadr(g) | steps(e)) for g in gs
        ]
    first = editors[0]
    steps = steps(first)
    gammas = _floats(args.gammas)
    if not args.no_figures:
        plan += [
            (f"{first} γ={g:g} {h}", first, sweep_cases, _sadr(g, h) | steps)
            for h in ("selective", "all")
            for g in gammas
        ]
        plan += [(f"{first} base", first, sweep_cases, {})]
        plan += [
            (f"{first} steps={s:g}", first, sweep_cases, {"steps": int(s)}) for s in _floats(args.knob_steps)
        ]
        plan += [(f"{first} lr={v:g}", first, sweep_cases, {"lr": v}) for v in _floats(args.knob_lr)]
        plan += [(f"{first} ω={v:g}", first, sweep_cases, {"kl_factor": v}) for v in _floats(args.knob_kl)]
    if args.part is not None:
        # Each distinct configuration once (e.g. "ROME" is also the sweep's base), its cases in
        # chunks, the chunks dealt out in turn: part I takes chunks I, I+N, ...
        unique = {Runs.config(model, cs, e, args.seed, o)[0]: (e, cs, o) for _, e, cs, o in plan}
        chunks = [
            (key, e, cs[i : i + args.chunk], o)
            for key, (e, cs, o) in unique.items()
            if key not in runs.done
            for i in range(0, len(cs), args.chunk)
        ]
        mine = share(chunks, args.part, contiguous=False, option="--part")
        for key, editor, cs, overrides in tqdm(mine, desc=f"part {args.part}: chunks"):
            runs.evaluate(model, cs, editor, args.seed, overrides, key)
        print(f"part {args.part}: {len(mine)} chunks of {args.chunk} cases done, in {out}")
        return {}
    results = {}
    for label, editor, cs, overrides in tqdm(plan, desc="configurations"):
        results[label] = runs.get(model, cs, editor, label, args.seed, **overrides)
    from drift import plots

    table_rows = [
        [label] + [_cell(results[label], m) for m in TABLE] for label, _, cs, _ in plan if cs is cases
    ]
    written = []
    written += plots.save(
        plots.table(
            ["method"] + TABLE,
            table_rows,
            title=f"Table 3 layout: {model.name}, {len(cases)} cases of {Path(args.data).name}",
        ),
        out / "table3",
        height=200 + 45 * len(table_rows),
    )
    if not args.no_figures:
        lines = {}
        for h in ("selective", "all"):
            for m in ("RS", "DNS", "ES"):
                lines[f"{m} ({h} heads)"] = [results[f"{first} γ={g:g} {h}"][m] for g in gammas]
        base = results[f"{first} base"]
        written += plots.save(
            plots.curves(
                gammas,
                lines,
                log_x=True,
                x_title="γ",
                y_title="score (%)",
                references={f"{first} {m}": base[m] for m in ("RS", "DNS")},
                title=f"SADR on {first}: selective vs all heads ({len(sweep_cases)} cases)",
            ),
            out / "fig6_selective_vs_all",
        )
        knobs = {
            "SADR γ": [f"{first} γ={g:g} selective" for g in gammas],
            "steps": [f"{first} steps={s:g}" for s in _floats(args.knob_steps)],
            "lr": [f"{first} lr={v:g}" for v in _floats(args.knob_lr)],
            "ω": [f"{first} ω={v:g}" for v in _floats(args.knob_kl)],
        }
        panels = {}
        for spec in ("RM", "DNM"):
            panels[spec] = {
                k: (
                    [results[l][spec] for l in ls],
                    [_success(results[l]) for l in ls],
                    [l.split(" ", 1)[1].split(" ")[0] for l in ls],
                )
                for k, ls in knobs.items()
            }
        written += plots.save(
            plots.paths(
                panels,
                x_titles={
                    "RM": "RM (relation, P of the right answer, %)",
                    "DNM": "DNM (distracting neighbourhood, %)",
                },
                y_title="edit success: mean of EM and PM (%)",
                title=f"Trade-off on {first}: SADR γ vs the editor's own knobs",
            ),
            out / "fig7_tradeoff",
            width=1200,
        )
    result = {
        "config": vars(args) | {"model": model.name, "n_cases": len(cases)},
        "results": results,
        "table3": {r[0]: dict(zip(TABLE, r[1:], strict=True)) for r in table_rows},
        "seconds": time.time() - t0,
    }
    (out / "sadr.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"{'method':<28}" + "".join(f"{m:>16}" for m in TABLE))
    for r in table_rows:
        print(f"{r[0]:<28}" + "".join(f"{c:>16}" for c in r[1:]))
    print(f"wrote {len(written)} figure files and {out / 'sadr.json'} in {result['seconds']:.0f} s")
    return result


def _cell(summary: dict, metric: str) -> str:
    value = summary.get(metric)
    if value is None:
        return "—"
    ci = summary.get(f"{metric}_ci")
    if ci and ci[0] is not None and ci[0] == ci[0]:
        return f"{value:.1f} ± {(ci[1] - ci[0]) / 2:.1f}"
    return f"{value:.1f}"


def _success(summary: dict) -> float:
    vals = [summary[m] for m in ("EM", "PM") if m in summary]
    return sum(vals) / len(vals) if vals else float("nan")


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=UserWarning)
    main()
