"""What SADR does inside ROME at the paper's setting: loss terms, restrained heads, drift after.

For each case: ROME (the preset, 20 steps) and ROME+SADR (default γ = 1e-2, 80 steps, the paper's
ROME setting on GPT-J, whatever the model; ``--sadr G --steps N`` another, e.g. ``--sadr 0.04
--steps 20``, SmolLM2-135M's chosen point, which ``eval --sadr`` runs there). From the SADR
run: every loss term through the steps, and at its last step which heads of which layers SADR
restrained (the fraction of rewriting prompts) with each head's KL. On the
case's distracting-neighbourhood prompt (the edit sentence before a neighbourhood prompt), for both
edits: each head's attention drift at the last token (KL(vanilla ‖ edited) and the extra
attention to the subject's last token), P(right answer) and P(o_edit); and whether giving ROME's
edited model back its vanilla attention weights in the ``--attn-layers`` layers repairs that prompt
(the trace's attention patching, first-token probabilities). ``--control`` adds ROME with SADR's
steps and no SADR term, which separates what the restraint does from what the extra steps do.

Writes ``OUT/sadr_mechanism.json`` (per case and averaged), ``sadr_losses`` (mean loss terms per
step), ``sadr_restrained`` (the fraction of prompts where SADR restrains each head, per layer) and
``sadr_heads`` (the subject-attention gain with ROME and with ROME+SADR, per layer and head) as
HTML and PNG, and prints the summary quoted in docs/results.md. ``--replot`` redraws from the JSON.
(``python analyses/sadr_mechanism.py`` is the same command.)

    python -m drift mechanism --limit 10 --out-dir figures/sadr_mechanism
    python -m drift mechanism --data CASES.json --ids unseen-eval.json --limit 10 --control
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from drift.cli import options as O
from drift.cli.script import parse_script

TERMS = ("nll", "kl", "weight_decay", "sadr")
CONTROL = "rome@sadr-steps"
LABELS = {"rome": "ROME (20 steps)", "rome+sadr": "ROME+SADR (80 steps)", CONTROL: "ROME (80 steps, no SADR)"}


def labels(steps: int = 80) -> dict[str, str]:
    """The runs' names in figures, with ROME+SADR's ``steps``."""
    return LABELS | {"rome+sadr": f"ROME+SADR ({steps} steps)", CONTROL: f"ROME ({steps} steps, no SADR)"}


def one_case(
    model,
    case,
    hp,
    window: tuple[int, int] = (14, 23),
    control: bool = False,
    scoring: str = "mean",
    setting: dict | None = None,
) -> dict:
    from drift.editors.rome import compute_rome
    from drift.editors.sadr import SADR, paper_setting
    from drift.interp import tracing
    from drift.interp.attention_drift import measure

    setting = setting or paper_setting("rome")  # GPT-J's: the paper's ROME setting
    term = SADR(setting["gamma"])
    t0 = time.time()
    plain = compute_rome(model, case, hp)
    restrained = compute_rome(model, case, replace(hp, steps=setting["steps"], extra_terms=(term,)))
    p = tracing.distracting_prompt(model, case)
    rows = {}
    edits = [("rome", plain), ("rome+sadr", restrained)]
    if control:  # ROME with SADR's steps and no SADR: what the extra steps alone do
        edits.append((CONTROL, compute_rome(model, case, replace(hp, steps=setting["steps"]))))
    # where the last token's extra attention goes in the window: the subject's last token (what
    # SADR restrains), o_edit's tokens in the edit sentence (copying the new object), the rest
    start = case.edit_sentence.rfind(case.o_edit)
    groups = {
        "subject": [p.subject_last],
        "o_edit": model.span_positions(p.text, start, start + len(case.o_edit)),
    }
    lo, hi = window
    for name, edit in edits:
        d = measure(model, edit, p, case.o_edit, scoring)
        with edit.applied(model):
            p_rewrite = model.target_prob(case.prompt, case.o_edit, scoring)
        extra = (d.edited_rows - d.vanilla_rows)[lo : hi + 1].sum((0, 1))  # [tokens]
        to = {g: float(extra[pos].sum()) for g, pos in groups.items()}
        to["rest"] = float(extra.sum()) - sum(to.values())  # rows sum to 1: the others' loss
        rows[name] = {
            "extra_attention": to,
            "kl": d.kl.tolist(),
            "subject_gain": d.subject_gain.tolist(),
            "p_true": d.p_true,
            "p_edit": d.p_edit,
            "p_rewrite": p_rewrite,
            "steps": len(edit.info["losses"]),
        }
    vanilla = {
        "p_true": model.target_prob(p.text, p.answer, scoring),
        "p_edit": model.target_prob(p.text, case.o_edit, scoring),
    }
    # does the damage travel through attention on this case? ROME's edit with the vanilla attention
    # weights patched back in `window` (first-token probabilities, as the trace reads them)
    patch = tracing.attention_patching(model, plain, p, window=window[1] - window[0] + 1)
    return {
        "case_id": case.case_id,
        "subject": case.subject,
        "vanilla": vanilla,
        "patching": {
            "vanilla": patch.vanilla[0].item(),
            "rome": patch.edited[0].item(),
            "patched": patch.probs[window[0], 0].item(),
            "best_patched": patch.probs[:, 0].max().item(),
        },
        "losses": restrained.info["losses"],
        "restrained": {l: r["restrained"].tolist() for l, r in term.report.items()},
        "head_kl": {l: r["kl"].tolist() for l, r in term.report.items()},
        "drift": rows,
        "seconds": round(time.time() - t0, 1),
    }


def chosen_ids(spec: str) -> set[str]:
    """Case ids from ``--ids``: a results JSON's cases, or a comma-separated list."""
    path = Path(spec)
    if spec.endswith(".json") and path.is_file():
        return {str(c["case_id"]) for c in json.loads(path.read_text())["cases"]}
    return {i.strip() for i in spec.split(",") if i.strip()}


def summarise(results: list[dict], n_layers: int, n_heads: int) -> dict:
    import torch

    steps = max(len(r["losses"]) for r in results)
    mean_losses = {
        t: [
            sum(r["losses"][i][t] for r in results if i < len(r["losses"]))
            / sum(i < len(r["losses"]) for r in results)
            for i in range(steps)
        ]
        for t in TERMS
    }
    restrained = torch.zeros(n_layers, n_heads)
    for r in results:
        for l, fr in r["restrained"].items():
            restrained[int(l)] += torch.tensor(fr)
    restrained /= len(results)
    gain = {
        k: torch.stack([torch.tensor(r["drift"][k]["subject_gain"]) for r in results]).mean(0)
        for k in results[0]["drift"]
    }
    per_layer = restrained.sum(-1)  # expected restrained heads per layer
    return {
        "n_cases": len(results),
        "mean_losses": mean_losses,
        "restrained": restrained.tolist(),
        "restrained_per_layer": per_layer.tolist(),
        "subject_gain": {k: v.tolist() for k, v in gain.items()},
        "p_true": {k: sum(r["drift"][k]["p_true"] for r in results) / len(results) for k in gain},
        "p_edit": {k: sum(r["drift"][k]["p_edit"] for r in results) / len(results) for k in gain},
        "extra_attention": {
            k: {
                g: sum(r["drift"][k]["extra_attention"][g] for r in results) / len(results)
                for g in results[0]["drift"][k]["extra_attention"]
            }
            for k in gain
            if all("extra_attention" in r["drift"][k] for r in results)  # older runs lack it
        },
        "p_rewrite": {k: sum(r["drift"][k]["p_rewrite"] for r in results) / len(results) for k in gain},
        "patching": {
            k: sum(r["patching"][k] for r in results) / len(results) for k in results[0].get("patching", {})
        },
    }


def draw(s: dict, out: Path, cases: list[dict] | None = None) -> None:
    """``sadr_losses``, ``sadr_restrained`` and ``sadr_heads`` from a summary, and with the cases
    ``sadr_cases``: each case's distracting prompt, P(right) and P(o_edit) per model."""
    import torch

    from drift import plots

    setting = s.get("setting", {"gamma": 1e-2, "steps": 80})  # older summaries: the paper's
    names_of = labels(setting["steps"])
    if cases and all("vanilla" in c for c in cases):
        names = [f"{c['case_id']} {c.get('subject', '')[:18]}" for c in cases]
        panels = {}
        for what, title in (("p_true", "P(right answer)"), ("p_edit", "P(o_edit)")):
            panels[title] = {"vanilla": [c["vanilla"][what] for c in cases]} | {
                names_of.get(k, k): [c["drift"][k][what] for c in cases] for k in cases[0]["drift"]
            }
        fig = plots.bars(
            names,
            panels,
            title="Each case's distracting prompt: the unedited model, ROME, ROME+SADR"
            + (" and ROME at SADR's steps" if CONTROL in cases[0]["drift"] else ""),
            y_title="probability",
        )
        plots.save(fig, out / "sadr_cases", width=1100, height=650)
    steps = range(len(s["mean_losses"]["nll"]))
    fig = plots.curves(
        steps,
        s["mean_losses"],
        title=f"ROME+SADR (γ = {setting['gamma']:g}, {setting['steps']} steps): loss terms, "
        f"mean over {s['n_cases']} cases",
        x_title="step",
        y_title="loss",
    )
    fig.update_yaxes(type="log")
    plots.save(fig, out / "sadr_losses")
    heads = [f"head {h}" for h in range(len(s["restrained"][0]))]
    gain = {k: torch.tensor(v) for k, v in s["subject_gain"].items()}
    fig = plots.heatmaps(
        {"fraction of prompts where SADR restrains the head (last step)": torch.tensor(s["restrained"])},
        heads,
        title=f"Where SADR acts: ROME+SADR at the paper's setting, mean over {s['n_cases']} cases",
        colorbar="fraction",
        x_title="head",
    )
    plots.save(fig, out / "sadr_restrained", width=600, height=600)
    fig = plots.heatmaps(
        {"ROME": gain["rome"], "ROME+SADR": gain["rome+sadr"]},
        heads,
        title="The last token's extra attention to the subject's last token on distracting prompts",
        colorbar="Δ attention",
        x_title="head",
    )
    plots.save(fig, out / "sadr_heads", height=600)


def add_options(p: argparse.ArgumentParser) -> None:
    """``mechanism``'s options."""
    O.add_data(p, limit=10)
    O.add_model(p)
    O.add_scoring(p, pool=False)
    O.add_output(p, kind="folder", default="figures/sadr_mechanism")
    g = p.add_argument_group("mechanism")
    g.add_argument(
        "--ids",
        default=None,
        help="only these cases: comma-separated ids, or a results JSON (an eval, say) whose cases to use",
    )
    g.add_argument(
        "--control",
        action="store_true",
        help=f"also ROME with SADR's steps and no SADR ({CONTROL!r}): the extra steps' share of the change",
    )
    # ROME+SADR's γ and steps: GPT-J's (1e-2, 80) unless given; `--sadr` alone: the model's own
    # (SmolLM2-135M's chosen point: 0.04 at 20 steps)
    O.add_sadr(g)
    O.add_steps(g)
    g.add_argument("--replot", action="store_true", help="redraw the figures from OUT/sadr_mechanism.json")
    g.add_argument(
        "--attn-layers",
        dest="window",
        type=O.layer_span,
        default="14,23",
        help="first,last layer where attention patching repairs the edit (the trace's)",
    )


def parse(argv=None) -> argparse.Namespace:
    """``analyses/sadr_mechanism.py``'s options: this command's, and ``-v``/``-q``."""
    return parse_script("analyses/sadr_mechanism.py", __doc__, add_options, argv)


def main(argv=None) -> dict:
    """``python analyses/sadr_mechanism.py ARGS``: with the script's own parser."""
    return run(parse(argv))


def run(args: argparse.Namespace) -> dict:
    """The mechanism's numbers and figures for ``args`` (``python -m drift mechanism``)."""
    out = Path(args.out)
    if args.replot:
        saved = json.loads((out / "sadr_mechanism.json").read_text())
        draw(saved["summary"], out, saved["cases"])
        return {}
    from tqdm.auto import tqdm

    import drift
    from drift.editors.rome import preset

    model = drift.load_model(args.model, device=args.device, dtype=args.dtype)
    hp = preset(model)
    cases = selected(args)
    lo, hi = args.window
    setting = sadr_setting(args)
    out.mkdir(parents=True, exist_ok=True)
    results = [
        one_case(model, c, hp, (lo, hi), args.control, args.scoring, setting)
        for c in tqdm(cases, desc="ROME and ROME+SADR", disable=args.quiet)
    ]
    L, H = model.cfg.n_layers, model.cfg.n_heads
    s = summarise(results, L, H) | {"setting": setting}
    config = {"data": args.data, "scoring": args.scoring, "window": [lo, hi], "control": args.control}
    config |= {"sadr": setting["gamma"], "steps": setting["steps"]}
    from drift.cli.spec import file_name, provenance

    config["data"] = file_name(args.data)
    config["provenance"] = provenance(data=args.data, device=str(model.device), dtype=args.dtype or "fp32")
    saved = {"config": config, "summary": s, "cases": results}
    from drift.util.store import save_json

    save_json(out / "sadr_mechanism.json", saved)
    draw(s, out, results)
    print_summary(s, len(results), (lo, hi))
    print(f"wrote {out}")
    return s


def selected(args: argparse.Namespace) -> list:
    """The cases of ``--data`` with a distracting prompt, those of ``--ids`` when given, the first
    ``--limit``; a ``ValueError`` naming the option when ``--ids`` names a case not there or none
    is left."""
    from drift.data import load_cases

    every = load_cases(args.data)
    cases = [c for c in every if c.distracting]
    if args.ids is not None:
        wanted = chosen_ids(args.ids)
        missing = wanted - {c.case_id for c in every}
        if missing:
            raise ValueError(f"--ids: case(s) {sorted(missing)[:5]} are not in {args.data}")
        cases = [c for c in cases if c.case_id in wanted]
    cases = cases[: args.limit]
    if not cases:
        raise ValueError("no case with a distracting prompt was selected (check --data, --ids, --limit)")
    return cases


def sadr_setting(args: argparse.Namespace) -> dict:
    """ROME+SADR's ``{"gamma", "steps"}``: GPT-J's, the paper's ROME setting, whatever the model;
    ``--sadr`` alone: the model's own; ``--sadr G`` and ``--steps N`` set either."""
    from drift.editors.sadr import paper_setting

    setting = paper_setting("rome")  # GPT-J's, the paper's ROME setting, whatever the model
    if args.sadr is not None and args.sadr < 0:  # --sadr alone: the model's own setting
        import drift

        setting = paper_setting("rome", args.model or drift.DEFAULT_MODEL)
    elif args.sadr is not None:
        setting["gamma"] = args.sadr
    if args.steps is not None:
        setting["steps"] = args.steps
    return setting


def print_summary(s: dict, n_cases: int, window: tuple[int, int]) -> None:
    """The summary quoted in docs/results.md: the loss terms at the last step, the layers with most
    restrained heads, each run's probabilities and subject gain in ``window`` and elsewhere, where
    the extra attention goes, and what attention patching repairs."""
    import torch

    lo, hi = window
    gain = {k: torch.tensor(v) for k, v in s["subject_gain"].items()}
    top = sorted(range(len(s["restrained_per_layer"])), key=lambda l: -s["restrained_per_layer"][l])[:5]
    last = {t: s["mean_losses"][t][-1] for t in TERMS}
    print(
        f"{n_cases} cases; mean terms at the last step: " + ", ".join(f"{t} {v:.4f}" for t, v in last.items())
    )
    print(
        "layers with most restrained heads: "
        + ", ".join(f"{l} ({s['restrained_per_layer'][l]:.2f})" for l in top)
    )
    for k in s["subject_gain"]:
        print(
            f"{k:16s} rewrite P(o_edit) {s['p_rewrite'][k]:.3f}   distracting: P(right) {s['p_true'][k]:.3f}"
            f"  P(o_edit) {s['p_edit'][k]:.3f}   positive subject gain in layers {lo}-{hi} "
            f"{float(gain[k][lo : hi + 1].clamp_min(0).sum()):.3f}, elsewhere "
            f"{float(gain[k].clamp_min(0).sum() - gain[k][lo : hi + 1].clamp_min(0).sum()):.3f}"
        )
    for k, to in s.get("extra_attention", {}).items():
        print(
            f"{k:16s} the last token's extra attention in layers {lo}-{hi} (heads summed): "
            + ", ".join(f"to {g} {v:+.3f}" for g, v in to.items())
        )
    if s["patching"]:
        pt = s["patching"]
        print(
            f"distracting P(right) first token: vanilla {pt['vanilla']:.3f}, ROME {pt['rome']:.3f}, "
            f"ROME with vanilla attention in layers {lo}-{hi} {pt['patched']:.3f} "
            f"(best window {pt['best_patched']:.3f})"
        )
