"""Sequential editing and knowledge attenuation (AdaPLE paper §3, §6, Fig. 3 and Fig. 6).

    python -m drift sequential                       # MEMIT and AdaPLE, ±DR, 100 edits of the dev set
    python -m drift sequential --edits 25 --data builtin --sweep-edits 10      # a quick look
    python -m drift sequential --sadr 1e-3           # also each editor with SADR (±DR)

- Attenuation curves: for each editor with and without drop-and-rescale (and with SADR when
  ``--sadr`` is given), ES / PS / NS of *all edits so far* after 1, 10, 25, 50, 100 stacked edits
  (each edit computed on the model carrying the earlier ones; the weights restored at the end).
- Drop-rate sweep (Fig. 6): ES / PS / NS of ``--sweep-edits`` stacked edits of ``--sweep-editor``
  for each drop rate in ``--sweep-rates``.
- Update similarity (Fig. 3): pairwise cosine similarity of the first ``--sim-edits`` updates of
  each editor's plain run, as computed, with the top 20% of entries kept, and after DR (the
  figure shows the first editor; ``sequential.json`` has all).

Each finished run is appended to ``OUT/sequential-runs.jsonl`` and reused when rerun; a run that
was interrupted resumes after its last finished edit (``OUT/.partial-KEY/``); ``--restart``
starts everything over. ``--part I/N`` does only every N-th run (from the I-th) and draws
nothing, so N processes or GPUs can share the work; then ``--join DIR1 DIR2 ...`` (without
``--part``) takes their finished runs in and draws the figures. Runs are keyed by
:func:`drift.cli.spec.run_key` of their configuration, which holds the case file's digest: a
case file edited since is another run. Writes ``OUT/*.html``,
``OUT/*.png`` and ``OUT/sequential.json``, and prints the efficacy table.
(``python analyses/sequential.py`` is the same command.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from drift.cli import options as O
from drift.cli.script import parse_script
from drift.data import dev_set_or_builtin

METRICS = ("ES", "PS", "NS")


class Runs:
    """Sequential runs finished so far, keyed by what determines their result; saved as they end
    in a :class:`drift.cli.runs.RecordLog` (``OUT/sequential-runs.jsonl``; an unfinished run's
    progress in ``OUT/.partial-KEY/``)."""

    def __init__(self, path: Path, restart: bool):
        from drift.cli.runs import RecordLog

        self.log = RecordLog(path, restart=restart)
        self.path, self.done = self.log.path, self.log.rows
        self.progress = True
        self.provenance: dict | None = None  # what runs them (drift.cli.spec.provenance), outside the key
        self.data: str | None = None  # the case file of the cases: its digest is in each new run's key

    def get(
        self,
        model,
        cases,
        editor: str,
        *,
        dr: float,
        sadr: float | None,
        steps: int | None = None,
        checkpoints,
        batch: int,
        seed: int,
        keep: int = 0,
        sim_dr: float = 0.8,
        retention: int | None = None,
    ) -> dict:
        """The run's record ``{"key", "label", "checkpoints": [{"n_edits", "summary"}], ...}``;
        with ``keep``, also the similarity matrices of its first ``keep`` raw updates. With
        :attr:`data` set, the case file's digest is part of the run's key (:meth:`finished`)."""
        from drift.cli.spec import digest_of, run_key

        cfg = config_of(
            model, cases, editor, dr=dr, sadr=sadr, steps=steps, checkpoints=checkpoints, batch=batch,
            seed=seed, keep=keep, sim_dr=sim_dr, retention=retention,
            data_sha256=None if self.data is None else digest_of(self.data),
        )  # fmt: skip
        key = run_key(cfg)
        if self.provenance is not None:
            cfg["provenance"] = self.provenance
        found = self.finished(cfg)
        if found is not None:
            return found
        return self.compute(model, cases, cfg, key)

    def finished(self, cfg: dict) -> dict | None:
        """The finished run of configuration ``cfg``, if there is one: under its key; else, for a
        run keyed before the case file's digest was (``cfg`` without ``data_sha256``, or naming
        the sampling corpus ``"corpus"``), that run when it read the same case file: the digest its
        record's provenance names is ``cfg``'s. A record naming none (written before drift recorded
        it: ``results/sequential``'s) is taken as it is, with a note; one of another case file is
        not taken (the run is done again under its own key)."""
        from drift.cli.spec import run_key

        key = run_key(cfg)
        if key in self.done:
            return self.done[key]
        digest = cfg.get("data_sha256")
        before = {k: v for k, v in cfg.items() if k != "data_sha256"}
        # a state whose configuration names this entry "corpus" is the same run
        as_corpus = {("corpus" if k == "sampling" else k): v for k, v in before.items()}
        for found in dict.fromkeys((run_key(before), run_key(as_corpus))):
            if found in self.done and _same_data(self.done[found], digest, self.data):
                return self.done[found]
        return None

    def compute(self, model, cases, cfg: dict, key: str) -> dict:
        """Run the configuration ``cfg`` (keyed ``key``) on ``cases``, resuming its unfinished
        progress in ``OUT/.partial-KEY/``; its record, saved before this returns."""
        from drift.evaluation.sequential import sequential_edits
        from drift.util.store import load_object

        keep, retention = cfg["keep"], cfg.get("retention")
        work = self.log.work(key)  # progress of an unfinished run
        compute = _keeping_raw(_editor(cfg), cases, keep, work)
        t0 = time.time()
        rows = sequential_edits(
            model,
            cases,
            compute,
            checkpoints=cfg["checkpoints"],
            batch=cfg["batch"],
            progress=self.progress,
            state=work / "state.pt",
            score=retention,
            on_checkpoint=self.checkpoint_log(key, _label_of(cfg)) if retention is not None else None,
        )
        rec = {
            "key": key,
            "label": _label_of(cfg),
            "config": cfg,
            "seconds": time.time() - t0,
            "checkpoints": [
                {"n_edits": r["n_edits"], "summary": r["summary"]}
                | ({"cases": _case_rows(r)} if retention is not None else {})
                for r in rows
            ],
        }
        if keep:
            kept = [load_object(work / f"raw-{i}.pt") for i in range(min(keep, len(cases)))]
            rec["similarity"] = similarity(kept, cfg["sim_dr"], cfg["seed"])
        self.log.append(rec)
        return rec

    def checkpoint_log(self, key: str, name: str):
        """What logs each checkpoint of run ``key`` as it ends, with its per-case rows, to
        ``OUT/sequential-checkpoints.jsonl``."""

        def logged(row: dict) -> None:
            from drift.cli.runs import append_record

            append_record(
                self.path.with_name("sequential-checkpoints.jsonl"),
                {"key": key, "label": name, "n_edits": row["n_edits"]}
                | {"summary": row["summary"], "cases": _case_rows(row)},
            )

        return logged


def config_of(
    model,
    cases,
    editor: str,
    *,
    dr: float,
    sadr: float | None,
    steps: int | None,
    checkpoints,
    batch: int,
    seed: int,
    keep: int,
    sim_dr: float,
    retention: int | None,
    data_sha256: str | None = None,
) -> dict:
    """The configuration of a sequential run: what its result depends on, whose
    :func:`drift.cli.spec.run_key` keys it. Entries added to drift later (``steps``,
    ``retention``, a half-precision ``dtype``, the case file's ``data_sha256``) appear only when
    set, so earlier runs' keys stay (and :meth:`Runs.finished` still finds them)."""
    import torch

    from drift.editors.stats import CORPUS_VERSION
    from drift.evaluation.metrics import DEFAULT_POOL, DEFAULT_SCORING

    cfg = {
        "model": model.name,
        "cases": [c.case_id for c in cases],
        "editor": editor,
        "dr": dr,
        "sadr": sadr,
        "checkpoints": list(checkpoints),
        "batch": batch,
        "seed": seed,
        "keep": keep,
        "sim_dr": sim_dr if keep else None,
        "sampling": CORPUS_VERSION,  # key statistics' corpus, named as in eval's configuration
        "scoring": DEFAULT_SCORING,
        "pool": DEFAULT_POOL,
    }
    if steps is not None:  # SADR's steps (--sadr alone); absent otherwise, as in earlier runs' keys
        cfg["steps"] = steps
    if retention is not None:  # only then: the keys of earlier runs stay as they were
        cfg["retention"] = retention
    if model.dtype != torch.float32:  # a half-precision run is another run (float32 keys unchanged)
        from drift.model.loading import dtype_name

        cfg["dtype"] = dtype_name(model.dtype)
    if data_sha256 is not None:  # the case file's contents: an edited target is another run
        cfg["data_sha256"] = data_sha256
    return cfg


def _same_data(record: dict, digest: str | None, data: str | None) -> bool:
    """Whether a finished run keyed without the case file's digest read the case file of digest
    ``digest`` (``None``: not known; then any): the one its provenance names. A record naming
    none is taken, with a note on stderr; one naming another digest is not, with a note."""
    import sys

    recorded = ((record.get("config") or {}).get("provenance") or {}).get("data") or {}
    if digest is None or recorded.get("sha256") == digest:
        return True
    if recorded.get("sha256") is None:
        print(
            f"note: the finished run {record.get('label')} ({record.get('key')}) names no case file "
            f"digest (written before drift recorded one): taken without checking it against {data}",
            file=sys.stderr,
        )
        return True
    print(
        f"note: the finished run {record.get('label')} ({record.get('key')}) read another version of "
        f"the case file (data_sha256 {recorded['sha256']}, now {digest}): it runs again",
        file=sys.stderr,
    )
    return False


def _editor(cfg: dict):
    """The editor of configuration ``cfg``: its edits with drop-and-rescale inside (per layer for
    range editors, AdaPLE's Algorithm 1) and SADR's term and steps when set."""
    from drift.editors import get_compute
    from drift.editors.sadr import SADR

    sadr, steps = cfg["sadr"], cfg.get("steps")
    overrides = ({"extra_terms": (SADR(sadr),)} if sadr else {}) | ({"steps": steps} if steps else {})
    return get_compute(cfg["editor"], drop_rate=cfg["dr"], seed=cfg["seed"], **overrides)


def _keeping_raw(compute, cases, keep: int, work: Path):
    """``compute``, which also saves the raw updates of the first ``keep`` cases to ``work``
    (``raw-I.pt``), for the similarity figure (``keep`` is only set where dr = 0)."""
    from drift.util.store import save_object

    position = {c.case_id: i for i, c in enumerate(cases)}

    def computed(model, case):
        edit = compute(model, case)
        if position[case.case_id] < keep:
            save_object(work / f"raw-{position[case.case_id]}.pt", (case.case_id, edit))
        return edit

    return computed


def _label_of(cfg: dict) -> str:
    return label(cfg["editor"], cfg["dr"], cfg["sadr"])


def _case_rows(row: dict) -> list[dict]:
    """A checkpoint's per-case rows, as saved: each case's id and metrics."""
    return [{"case_id": c["case_id"], "metrics": c["metrics"]} for c in row["cases"]]


def series(checkpoints: list[dict], metric: str) -> list[float | None]:
    """``metric`` at each checkpoint; None (a gap in the figure) where none of the cases so far
    has its prompts, as for PS after a first case without paraphrases."""
    return [c["summary"].get(metric) for c in checkpoints]


def label(editor: str, dr: float, sadr: float | None) -> str:
    return editor.upper() + (f"+SADR(γ={sadr:g})" if sadr else "") + (f" +DR(p={dr:g})" if dr > 0 else "")


def similarity(kept: list, p: float, seed: int) -> dict:
    """Pairwise cosine similarity of raw updates, their top 20%, and their drop-and-rescale at ``p``."""
    from drift.editors.fusion import case_seed, drop_and_rescale, pairwise_cosine, top_k_retain

    edits = [e for _, e in kept]
    return {
        "labels": [str(cid) for cid, _ in kept],
        "as computed": pairwise_cosine(edits).tolist(),
        "top 20% kept": pairwise_cosine([top_k_retain(e, 0.2) for e in edits]).tolist(),
        f"drop-and-rescale p={p:g}": pairwise_cosine(
            [drop_and_rescale(e, p, seed=case_seed(cid, seed)) for cid, e in kept]
        ).tolist(),
    }


def _off_diagonal_mean(m: list[list[float]]) -> float:
    import torch

    t = torch.tensor(m)
    n = t.shape[0]
    return float((t.sum() - t.trace()) / max(1, n * n - n))


def part(text: str) -> str:
    """``--part I/N``."""
    return O.shard_spec(text)


def add_options(p: argparse.ArgumentParser) -> None:
    """``sequential``'s options."""
    O.add_data(p, default=dev_set_or_builtin())
    O.add_model(p)
    O.add_run(p)
    O.add_output(
        p,
        kind="folder",
        default="figures/sequential",
    )
    g = p.add_argument_group("sequential")
    _add_curve_options(g)
    _add_sweep_options(g)
    g.add_argument(
        "--sim-edits", type=O.positive_int, default=20, help="updates in the similarity figure (default 20)"
    )
    g.add_argument(
        "--retention",
        type=O.positive_int,
        default=None,
        metavar="K",
        help="at each checkpoint re-score only the first K edits, a fixed early set (its per-case "
        "rows kept, each checkpoint also appended to OUT/sequential-checkpoints.jsonl as it ends): "
        "attenuation as the AdaPLE paper measures it; default: all edits so far",
    )
    g.add_argument(
        "--key-overlap",
        action="store_true",
        help="instead of editing: the overlap kᵢᵀC⁻¹kⱼ of the --edits cases' subject keys at MEMIT's "
        "layers beside its chance level (keys of random corpus tokens), and the noise drop-and-rescale "
        "at --dr writes at them, into OUT/key-overlap.json",
    )
    g.add_argument(
        "--part", type=part, default=None, metavar="I/N", help="do only runs I, I+N, ... and draw nothing"
    )
    g.add_argument(
        "--join",
        nargs="*",
        default=[],
        metavar="DIR",
        help="first take in the finished runs of these folders",
    )


def _add_curve_options(g) -> None:
    """The attenuation curves' options: editors, edits, checkpoints, batch, DR and SADR."""
    g.add_argument(
        "--editors",
        type=O.editor_list,
        default="memit,adaple",
        help=O.EDITORS_HELP + " (default memit,adaple)",
    )
    g.add_argument("--edits", type=O.positive_int, default=100, help="stacked edits per run (default 100)")
    g.add_argument(
        "--checkpoints",
        type=O.counts,
        default="1,10,25,50,100",
        help=O.CHECKPOINTS_HELP.removeprefix("with --sequential: ") + " (default 1,10,25,50,100)",
    )
    g.add_argument(
        "--batch",
        type=O.positive_int,
        default=1,
        help="edits computed on one model state and applied together",
    )
    g.add_argument(
        "--dr",
        type=O.fraction,
        default=0.8,
        metavar="P",
        help=O.DR_HELP + " (default: 0.8, in the runs with DR)",
    )
    O.add_sadr(g)  # the runs with SADR, beside those without


def _add_sweep_options(g) -> None:
    """The drop-rate sweep's options."""
    g.add_argument(
        "--sweep-editor",
        choices=O.EDITED,
        default="adaple",
        help="editor of the drop-rate sweep (default adaple)",
    )
    g.add_argument(
        "--sweep-rates",
        type=O.floats,
        default="0,0.5,0.7,0.9",
        help="drop rates of the sweep (default 0,0.5,0.7,0.9)",
    )
    g.add_argument(
        "--sweep-edits", type=O.positive_int, default=10, help="stacked edits per sweep point (default 10)"
    )
    g.add_argument("--no-sweep", action="store_true", help="skip the drop-rate sweep")


def parse(argv=None) -> argparse.Namespace:
    """``analyses/sequential.py``'s options: this command's, and ``-v``/``-q``."""
    return parse_script("analyses/sequential.py", __doc__, add_options, argv)


def main(argv=None) -> dict:
    """``python analyses/sequential.py ARGS``: with the script's own parser."""
    return run(parse(argv))


def overlap(model, cases, out: Path, args: argparse.Namespace) -> dict:
    """``--key-overlap``: :func:`drift.evaluation.sequential.key_overlap` of ``cases`` at MEMIT's layers,
    saved (cosines to 4 digits) to ``OUT/key-overlap.json`` and summarised on stdout."""
    from drift.cli.spec import file_name, provenance
    from drift.editors.memit import preset
    from drift.evaluation.sequential import key_overlap
    from drift.util.store import save_json

    layers = list(preset(model).layers)
    found = key_overlap(model, cases, layers, seed=args.seed, drop_rate=args.dr)
    saved = {
        "config": {"data": file_name(args.data), "cases": [c.case_id for c in cases], "layers": layers}
        | {
            "model": model.name,
            "seed": args.seed,
            "provenance": provenance(data=args.data, device=str(model.device)),
        },
        "gaussian_mean_abs_cosine": found["gaussian"],
        "drop_rate": found["drop_rate"],
        "layers": {
            str(l): {
                side: {k: v for k, v in found[l][side].items() if k not in ("gram", "cosine")}
                | (
                    {"cosine": [[round(x, 4) for x in r] for r in found[l][side]["cosine"]]}
                    if side == "edits"
                    else {}
                )
                for side in ("edits", "chance")
            }
            for l in layers
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "key-overlap.json", saved)
    print(
        f"{len(cases)} subject keys against as many random corpus keys "
        f"(whitened-Gaussian level {found['gaussian']:.4f}):"
    )
    for l in layers:
        e, c = found[l]["edits"], found[l]["chance"]
        print(
            f"layer {l}: mean |cos| edits {e['mean_abs_cosine']:.4f} (max {e['max_abs_cosine']:.3f}), "
            f"chance {c['mean_abs_cosine']:.4f} (max {c['max_abs_cosine']:.3f}); mean |write ratio| "
            f"edits {e['mean_abs_write']:.4f}, chance {c['mean_abs_write']:.4f}; rms write ratio "
            f"{e['rms_write']:.4f} against drop-and-rescale's rms noise (p = {found['drop_rate']}) "
            f"{e['rms_dropout_write']:.4f} at other keys, {e['rms_dropout_write_own']:.4f} at its own"
        )
    print(f"wrote {out / 'key-overlap.json'}")
    return saved


def run(args: argparse.Namespace) -> dict:
    """The attenuation curves, drop-rate sweep and similarity for ``args``
    (``python -m drift sequential``)."""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    t0 = time.time()
    out = Path(args.out)
    model, main_cases, sweep_cases = _model_and_cases(args)
    if args.key_overlap:
        return overlap(model, main_cases, out, args)
    runs = _runs(args, model, out)
    jobs = _jobs(args, runs, model, main_cases, sweep_cases)
    if args.part is not None:
        from drift.util.runtime import share

        for _, run in share(jobs, args.part, contiguous=False, option="--part"):
            run()
        print(f"part {args.part}: done, in {runs.path}")
        return {}
    from drift import plots  # only to draw: a --part process runs without plotly (a GPU machine's image)

    done = {what: run() for what, run in jobs}
    curves = {rec["label"]: rec for what, rec in done.items() if what[0] == "curve"}
    sweep = {what[1]: rec for what, rec in done.items() if what[0] == "sweep"}
    written = _attenuation_figures(plots, curves, model.name, out)
    written += _sweep_figure(plots, sweep, args, out)
    written += _similarity_figure(plots, curves, out)
    result = _result(args, model.name, runs.provenance, curves, sweep) | {"seconds": time.time() - t0}
    from drift.util.store import save_json

    save_json(out / "sequential.json", json.loads(json.dumps(result, default=str)))
    _print_summary(result, curves)
    print(f"wrote {len(written)} figure files and {out / 'sequential.json'} in {result['seconds']:.0f} s")
    return result


def _model_and_cases(args: argparse.Namespace) -> tuple:
    """The model, the curves' ``--edits`` cases and the sweep's ``--sweep-edits`` cases."""
    import drift
    from drift.data import load_cases

    model = drift.load_model(args.model, device=args.device, dtype=args.dtype)
    cases = load_cases(args.data, limit=max(args.edits, args.sweep_edits))
    if len(cases) < args.edits:
        raise ValueError(f"--edits {args.edits}: {args.data} has only {len(cases)} cases")
    return model, cases[: args.edits], cases[: args.sweep_edits]


def _runs(args: argparse.Namespace, model, out: Path) -> Runs:
    """The finished runs in ``OUT`` (and those of ``--join``'s folders), and what runs the new ones."""
    from drift.cli.spec import provenance

    runs = Runs(out / "sequential-runs.jsonl", args.restart)
    runs.progress = not args.quiet
    runs.data = args.data
    runs.provenance = provenance(
        data=args.data, device=str(model.device), dtype=args.dtype or "fp32", edit_batch=args.batch
    )
    for folder in args.join:
        if not runs.log.take_in(Path(folder) / runs.path.name):
            raise ValueError(f"--join: {folder} holds no finished runs ({runs.path.name})")
    return runs


def _variants(args: argparse.Namespace, e: str) -> list[tuple[float, float | None, int | None]]:
    """(drop rate, SADR's γ, its steps) of the editor's runs: without SADR, and with it when asked
    (``--sadr`` alone: the paper's γ and steps for the editor and model)."""
    plain = [(0.0, None, None), (args.dr, None, None)]
    if not args.sadr:
        return plain
    gamma, steps = args.sadr, None
    if gamma < 0:
        import drift
        from drift.editors.sadr import paper_setting

        setting = paper_setting(e, args.model or drift.DEFAULT_MODEL)
        gamma, steps = setting["gamma"], setting["steps"]
    return plain + [(0.0, gamma, steps), (args.dr, gamma, steps)]


def _jobs(args: argparse.Namespace, runs: Runs, model, main_cases, sweep_cases) -> list[tuple]:
    """``(what it is, how to run it)`` of every run: the attenuation curves (``("curve", editor,
    dr, sadr)``), then the drop-rate sweep (``("sweep", p)``)."""
    marks = sorted(set(args.checkpoints) | {args.edits})
    marks = [n for n in marks if n <= args.edits]
    common = {"batch": args.batch, "seed": args.seed}
    jobs = []
    for e in args.editors:
        for dr, sadr, steps in _variants(args, e):
            keep = args.sim_edits if (dr == 0 and sadr is None) else 0
            jobs.append(
                (
                    ("curve", e, dr, sadr),
                    lambda e=e, dr=dr, sadr=sadr, steps=steps, keep=keep: runs.get(
                        model,
                        main_cases,
                        e,
                        dr=dr,
                        sadr=sadr,
                        steps=steps,
                        checkpoints=marks,
                        keep=keep,
                        sim_dr=args.dr,
                        retention=args.retention,
                        **common,
                    ),
                )
            )
    if not args.no_sweep:
        for p in args.sweep_rates:
            jobs.append(
                (
                    ("sweep", p),
                    lambda p=p: runs.get(
                        model,
                        sweep_cases,
                        args.sweep_editor,
                        dr=p,
                        sadr=None,
                        checkpoints=[args.sweep_edits],
                        **common,
                    ),
                )
            )
    return jobs


def _attenuation_figures(plots, curves: dict, model_name: str, out: Path) -> list[Path]:
    """``attenuation_M`` for each metric: each run's M of the edits so far at each checkpoint."""
    written = []
    for m in METRICS:
        lines = {name: series(rec["checkpoints"], m) for name, rec in curves.items()}
        xs = [c["n_edits"] for c in next(iter(curves.values()))["checkpoints"]]
        written += plots.save(
            plots.curves(
                xs,
                lines,
                x_title="edits so far",
                y_title=f"{m} of all edits so far (%)",
                title=f"Knowledge attenuation on {model_name}: {m}",
            ),
            out / f"attenuation_{m}",
        )
    return written


def _sweep_figure(plots, sweep: dict, args: argparse.Namespace, out: Path) -> list[Path]:
    """``drop_rate_sweep``: each metric after ``--sweep-edits`` edits against the drop rate."""
    if not sweep:
        return []
    rates = list(sweep)
    return plots.save(
        plots.curves(
            rates,
            {m: series([sweep[p]["checkpoints"][-1] for p in rates], m) for m in METRICS},
            x_title="drop rate p",
            y_title="score (%)",
            title=f"Drop rate: {args.sweep_editor} after {args.sweep_edits} edits",
        ),
        out / "drop_rate_sweep",
    )


def _first_similarity(curves: dict) -> dict:
    """The first run's record that kept its raw updates' similarity."""
    return next(rec for rec in curves.values() if "similarity" in rec)


def _similarity_figure(plots, curves: dict, out: Path) -> list[Path]:
    """``update_similarity``: the first similarity's matrices, with their off-diagonal means."""
    import torch

    first = _first_similarity(curves)
    sim = first["similarity"]
    panels = {k: torch.tensor(v) for k, v in sim.items() if k != "labels"}
    return plots.save(
        plots.matrices(
            {f"{k} (mean {_off_diagonal_mean(v.tolist()):.2f})": v for k, v in panels.items()},
            sim["labels"],
            colorbar="cosine",
            title=f"Pairwise cosine similarity of {len(sim['labels'])} {first['config']['editor']} updates",
        ),
        out / "update_similarity",
        width=1500,
        height=520,
    )


def _result(args: argparse.Namespace, model_name: str, prov: dict | None, curves: dict, sweep: dict) -> dict:
    """``sequential.json`` less its seconds: the configuration, the curves, the sweep's last
    summaries and the similarities."""
    from drift.cli.spec import file_name

    sim = _first_similarity(curves)["similarity"]
    return {
        "config": vars(args)
        | {"model": model_name, "data": file_name(args.data), "out": file_name(str(args.out))}
        | {"provenance": prov},
        "curves": {k: v["checkpoints"] for k, v in curves.items()},
        "drop_rate_sweep": {str(p): sweep[p]["checkpoints"][-1]["summary"] for p in sweep},
        "similarity": {k: v["similarity"] for k, v in curves.items() if "similarity" in v},
        "similarity_mean_off_diagonal": {k: _off_diagonal_mean(v) for k, v in sim.items() if k != "labels"},
    }


def _print_summary(result: dict, curves: dict) -> None:
    """The efficacy table (ES at each checkpoint per run) and the similarities' means."""
    print(
        f"{'run':<28}"
        + "".join(f"{'ES@' + str(c['n_edits']):>10}" for c in next(iter(curves.values()))["checkpoints"])
    )
    for name, rec in curves.items():
        print(f"{name:<28}" + "".join(f"{c['summary']['ES']:>10.1f}" for c in rec["checkpoints"]))
    print(
        "similarity (mean off-diagonal):",
        ", ".join(f"{k} {v:.3f}" for k, v in result["similarity_mean_off_diagonal"].items()),
    )
