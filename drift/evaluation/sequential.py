"""Sequential editing: edits stacked one after another, each computed on the already-edited model.

Unlike :func:`drift.evaluation.evaluate.evaluate` with an editor (each case edited, evaluated, rolled back),
here the model keeps every edit: edit *n* is computed with edits 1..n−1 in place, optionally fused
sparsely first (``fuse``, e.g. :func:`drift.editors.fusion.drop_and_rescale`). At each checkpoint
all edits so far are evaluated on the model as it stands — the knowledge-attenuation measurement
of the AdaPLE paper §3. When the run ends, also through an exception or KeyboardInterrupt, every
edit is removed and the weights are bit-identical to before.

With ``state=PATH`` the run can be resumed: after each batch the current values of every weight
the edits touched, the finished checkpoints and the number of edits done are saved there
(atomically; :func:`save_state` describes the file); a rerun with the same cases and
``state`` puts those weights back and goes on with the next edit. (Put back as one delta per
weight, W₀ + (W − W₀), which can differ from W by float rounding; the restore at the end is still
exact.) The file is removed when the run ends.

Example:
    >>> import torch
    >>> from drift.data import load_cases
    >>> from drift.editors import get_compute
    >>> before = model.weight("W_out", 0).clone()                    # the tiny model's MEMIT layer
    >>> rows = sequential_edits(model, load_cases("builtin")[:3], get_compute("memit", steps=2),
    ...                         checkpoints=(1, 3), progress=False)
    >>> [(r["n_edits"], len(r["cases"]), r["summary"]["ES_n"]) for r in rows]
    [(1, 1, 1), (3, 3, 3)]
    >>> torch.equal(model.weight("W_out", 0), before)                # every edit removed at the end
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from torch import Tensor

from drift.data import EditCase
from drift.editors.base import Edit, WeightDelta
from drift.evaluation.evaluate import EvalSpec, evaluate
from drift.evaluation.metrics import DEFAULT_POOL, DEFAULT_SCORING, check_scoring, summarise
from drift.model.adapter import Model
from drift.model.sites import Weight
from drift.util import progress as prog
from drift.util.store import CorruptCacheError, config_digest, load_object, save_object


def sequential_edits(
    model: Model,
    cases: Sequence[EditCase],
    compute: Callable[[Model, EditCase], Edit],
    *,
    checkpoints: Sequence[int] = (1, 10, 25, 50, 100),
    batch: int = 1,
    fuse: Callable[[Edit], Edit] | None = None,
    progress: bool | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
    on_edit: Callable[[EditCase, Edit], None] | None = None,
    state: str | Path | None = None,
    scoring: str = DEFAULT_SCORING,
    pool: str = DEFAULT_POOL,
    score: int | None = None,
) -> list[dict]:
    """Apply ``compute``'s edits for ``cases`` one after another without rolling back; after
    ``n`` edits for each ``n`` in ``checkpoints``, evaluate cases 1..n on the edited model.

    ``batch > 1`` computes the edits of ``batch`` consecutive cases on the same model state and
    applies them together (checkpoints then fall on the next multiple of ``batch``). ``on_edit``
    sees every edit as applied (after ``fuse``), e.g. to keep the deltas for analysis. ``state``:
    a file to resume from and save to (see the module docstring). ``scoring`` and ``pool``: how
    checkpoints are scored and summarised (see :mod:`drift.evaluation.metrics`). ``progress``: a bar over
    the edits (``None``: by default, :mod:`drift.util.progress`; ``False``: none), each edit computed
    and each checkpoint scored quietly under it. ``score``: at each checkpoint
    evaluate only the first ``score`` cases, a fixed early set whose retention is measured as
    more edits stack (the AdaPLE paper's attenuation); ``None``: all edits so far.

    Returns one row per checkpoint: ``{"n_edits", "summary", "cases"}``. The model is restored
    exactly before this returns or raises."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if score is not None and score < 1:
        raise ValueError(f"score must be at least 1 (the early edits re-scored), got {score}")
    check_scoring(scoring, pool)
    handles = []
    rows: list[dict] = []
    marks = sorted({n for n in checkpoints if 1 <= n <= len(cases)})
    run_id = config_digest(
        {"cases": [str(c.case_id) for c in cases], "checkpoints": marks, "batch": batch}
        | ({"score": score} if score is not None else {})
    )
    touched: set[tuple[str, int]] = set()
    first = 0
    with prog.bars(progress):
        bar = prog.bar(total=len(cases), desc="sequential edits", unit="edit", leave=True)
    try:
        saved = load_state(state, run_id)
        if saved is not None:
            # each weight by its one name (a state saved by an older drift may say "mlp_out")
            weights = {tuple(Weight(w, l)): v for (w, l), v in saved["weights"].items()}
            handles.append(_put_back(model, weights))
            touched |= set(weights)
            rows, first = saved["rows"], saved["n_done"]
            bar.update(first)
        for start in range(first, len(cases), batch):
            group = cases[start : start + batch]
            for case, edit in zip(group, _computed(model, group, compute, fuse)):
                handles.append(edit.apply(model))
                touched |= {(d.which, d.layer) for d in edit.deltas}
                if on_edit is not None:
                    on_edit(case, edit)
            bar.update(len(group))
            i = start + len(group)
            if any(start < n <= i for n in marks):
                row = _checkpoint(model, cases[: i if score is None else min(i, score)], i, scoring, pool)
                rows.append(row)
                if on_checkpoint is not None:
                    on_checkpoint(row)
            if state is not None:
                weights = {k: model.weight(*k).detach().cpu().clone() for k in sorted(touched)}
                save_state(state, run_id, i, rows, weights)
        if state is not None and Path(state).exists():
            Path(state).unlink()
    finally:
        bar.close()
        for h in reversed(handles):
            h.remove()
    return rows


def _put_back(model: Model, weights: dict[tuple[str, int], Tensor]):
    """Apply, as one edit, the deltas that take each saved weight from its current value to the
    saved one (W₀ + (W − W₀)); returns the handle that removes them."""
    deltas = [
        WeightDelta(w, l, v.to(model.weight(w, l).device) - model.weight(w, l).detach())
        for (w, l), v in weights.items()
    ]
    return Edit(deltas).apply(model)


def _computed(
    model: Model,
    group: Sequence[EditCase],
    compute: Callable[[Model, EditCase], Edit],
    fuse: Callable[[Edit], Edit] | None,
) -> list[Edit]:
    """The edits of one batch, each computed quietly on the model as it stands, then ``fuse``d."""
    edits = []
    for case in group:
        with prog.verbose(False):  # the bar only: each edit's own bar would break it up
            edit = compute(model, case)
        edits.append(fuse(edit) if fuse is not None else edit)
    return edits


def _checkpoint(model: Model, scored: Sequence[EditCase], n_edits: int, scoring: str, pool: str) -> dict:
    """The checkpoint after ``n_edits`` edits: ``scored`` evaluated on the model as it stands,
    ``{"n_edits", "summary", "cases"}``."""
    results = evaluate(model, scored, spec=EvalSpec(fluency=False, scoring=scoring), progress=False)
    return {"n_edits": n_edits, "summary": summarise([r["metrics"] for r in results], pool), "cases": results}


def save_state(path: Path | str, run_id: str, n_done: int, rows: list[dict], weights: dict) -> None:
    """Save the progress of a run of stacked edits (:func:`drift.evaluation.sequential.sequential_edits` with
    ``state=PATH``; the ``sequential`` command's ``.partial-KEY/state.pt``), rewritten atomically
    after each batch: one pickle (:func:`drift.util.store.save_object`) of ``{"run_id": the run's key
    (its cases, checkpoints and batch), "n_done": edits applied, "rows": the finished checkpoints'
    rows, "weights": {(which, layer): the weight's current value} for every weight the edits
    touched}``.

    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "state.pt"
    >>> save_state(path, "abc", 2, [], {("W_out", 0): torch.zeros(2)})
    >>> load_state(path, "abc")["n_done"], load_state(path, "another run")
    (2, None)
    """
    save_object(Path(path), {"run_id": run_id, "n_done": n_done, "rows": rows, "weights": weights})


def load_state(path: Path | str | None, run_id: str) -> dict | None:
    """The progress :func:`save_state` saved for the run ``run_id``; ``None`` when there is none
    (no path, no file, another run's file, or a damaged one: the run starts over)."""
    if path is None or not Path(path).exists():
        return None
    try:
        saved = load_object(Path(path))
    except CorruptCacheError:
        return None
    if not isinstance(saved, dict) or saved.get("run_id") != run_id:
        return None
    return saved


def subject_keys(model: Model, cases: Sequence[EditCase], layers: Sequence[int]) -> dict[int, Tensor]:
    """Each case's MLP key (the input of ``W_out``, ``mlp_key``) at its subject's last token of
    the bare rewrite prompt, on the model as it is: ``{layer: [n_cases, d_mlp]}`` in float64.
    The key an edit writes to (its editor averages it over context prefixes as well)."""
    import torch

    rows: dict[int, list[Tensor]] = {layer: [] for layer in layers}
    for case in cases:
        last = model.subject_positions(case.prompt, case.subject, start=case.subject_at(case.prompt))[-1]
        cache = model.record(torch.tensor([model.encode(case.prompt)]), [("mlp_key", l) for l in layers])
        for layer in layers:
            rows[layer].append(cache["mlp_key", layer][0, last].double().cpu())
    return {layer: torch.stack(r) for layer, r in rows.items()}


def corpus_keys(
    model: Model, layers: Sequence[int], n: int, texts: Sequence[str], seed: int = 0
) -> dict[int, Tensor]:
    """MLP keys at ``n`` random token positions (never position 0) of ``texts``, the key
    statistics' corpus: keys drawn as C = E[k kᵀ] was estimated, the chance level of an overlap.
    ``{layer: [n, d_mlp]}`` in float64."""
    import torch

    g = torch.Generator().manual_seed(seed)
    rows: dict[int, list[Tensor]] = {layer: [] for layer in layers}
    per_text = max(1, n // max(1, len(texts)) + 1)
    for text in texts:
        if len(rows[layers[0]]) >= n:
            break
        ids = model.encode(text)[: min(512, model.cfg.n_ctx)]
        if len(ids) < 2:
            continue
        cache = model.record(torch.tensor([ids]), [("mlp_key", l) for l in layers])
        take = 1 + torch.randperm(len(ids) - 1, generator=g)[:per_text]
        for layer in layers:
            rows[layer] += list(cache["mlp_key", layer][0, take].double().cpu())
    return {layer: torch.stack(r[:n]) for layer, r in rows.items()}


def overlap_matrix(K: Tensor, C: Tensor) -> dict[str, Tensor]:
    """For keys ``K [n, d_mlp]`` and their layer's second moment ``C [d_mlp, d_mlp]``: the Gram
    matrix in C⁻¹'s metric, ``G = K C⁻¹ Kᵀ [n, n]`` (gᵢⱼ = kᵢᵀC⁻¹kⱼ), its cosines
    gᵢⱼ/√(gᵢᵢgⱼⱼ), and the *write ratio* gᵢⱼ/gⱼⱼ: a rank-one update u ⊗ r with u = C⁻¹kⱼ/(kⱼᵀC⁻¹kⱼ)
    (ROME's form; MEMIT spreads the same direction) moves the output at key kᵢ by gᵢⱼ/gⱼⱼ · r,
    that share of what it writes at its own key. Interference between stacked edits is that
    share, not the flattened cosine of the updates.

    >>> import torch
    >>> m = overlap_matrix(torch.eye(3, dtype=torch.float64)[:2], torch.eye(3))
    >>> m["cosine"].tolist(), m["write"].tolist()
    ([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]])
    """
    import torch

    from drift.editors.spread import ridged_system

    K = K.double()
    G = K @ torch.linalg.solve(ridged_system(C, 1.0), K.T)
    d = G.diagonal()
    return {"gram": G, "cosine": G / torch.sqrt(d[:, None] * d[None, :]), "write": G / d[None, :]}


def dropout_write(K: Tensor, C: Tensor, p: float) -> Tensor:
    """What drop-and-rescale at rate ``p`` adds at other keys, ``[n, n]``: entry (i, j) is the
    root-mean-square size (over the Bernoulli masks) of the zero-mean noise that dropping and
    rescaling edit j's rank-one update u ⊗ r (u = C⁻¹kⱼ/(kⱼᵀC⁻¹kⱼ), as in :func:`overlap_matrix`)
    writes at key kᵢ, relative to the update's write at its own key, ‖r‖. Each entry of u ⊗ r is
    kept with probability 1 − p and rescaled by 1/(1 − p), so the noise has variance p/(1 − p) ·
    (u_a r_c)² per entry and its write at kᵢ has mean square p/(1 − p) · ‖r‖² · Σₐ kᵢₐ²uₐ²: it
    depends on how kᵢ's and u's large coordinates coincide, not on kᵢᵀu (the write ratio, which
    the mask keeps on average). ``K [n, d_mlp]``, ``C [d_mlp, d_mlp]``.

    >>> import torch
    >>> n = dropout_write(torch.eye(2, dtype=torch.float64), torch.eye(2), 0.5)
    >>> [[round(float(x), 3) for x in row] for row in n]
    [[1.0, 0.0], [0.0, 1.0]]
    """
    import torch

    from drift.editors.spread import ridged_system

    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop rate p must be in [0, 1), got {p}")
    K = K.double()
    U = torch.linalg.solve(ridged_system(C, 1.0), K.T)  # [d_mlp, n]: column j is C⁻¹kⱼ
    U = U / (K * U.T).sum(dim=1)[None, :]  # scaled so that kⱼᵀuⱼ = 1
    return torch.sqrt(p / (1.0 - p) * (K**2) @ (U**2))


def off_diagonal(m: Tensor) -> Tensor:
    """The off-diagonal entries of a square matrix, flattened."""
    import torch

    n = m.shape[0]
    return m[~torch.eye(n, dtype=torch.bool)]


def key_overlap(
    model: Model,
    cases: Sequence[EditCase],
    layers: Sequence[int],
    *,
    chance_texts: Sequence[str] | None = None,
    seed: int = 0,
    drop_rate: float = 0.8,
) -> dict:
    """How much stacked edits of ``cases`` can interfere: at each of ``layers``, the overlap of
    their subject keys in C⁻¹'s metric (:func:`overlap_matrix`), beside its chance level, the same
    for as many keys at random positions of the key statistics' corpus (``chance_texts``, default
    :func:`drift.editors.stats.default_sequences`), and the level of independent whitened
    Gaussian keys, √(2/(π·d_mlp)) for the mean |cosine|. Returns ``{layer: {"edits", "chance"}}``
    with each side's matrices (lists) and summary: mean and largest off-diagonal |cosine| and
    |write ratio|, the root-mean-square write ratio and, beside it, the root-mean-square noise that
    drop-and-rescale at ``drop_rate`` writes at the other keys (:func:`dropout_write`; at the edit's
    own key too); ``"gaussian"``: the Gaussian level."""
    import math

    from drift.editors.stats import default_sequences, key_second_moment

    layers = list(layers)
    C = key_second_moment(model, layers)
    texts = list(chance_texts) if chance_texts is not None else default_sequences(model)
    edits = subject_keys(model, cases, layers)
    chance = corpus_keys(model, layers, len(cases), texts, seed)
    out: dict = {
        "gaussian": math.sqrt(2 / (math.pi * model.cfg.d_mlp)),
        "n": len(cases),
        "drop_rate": drop_rate,
    }
    for layer in layers:
        out[layer] = {}
        for side, K in (("edits", edits[layer]), ("chance", chance[layer])):
            m = overlap_matrix(K, C[layer])
            cos, write = off_diagonal(m["cosine"]).abs(), off_diagonal(m["write"]).abs()
            noise = dropout_write(K, C[layer], drop_rate)
            out[layer][side] = {
                "mean_abs_cosine": float(cos.mean()),
                "max_abs_cosine": float(cos.max()),
                "mean_abs_write": float(write.mean()),
                "max_abs_write": float(write.max()),
                "mean_cosine": float(off_diagonal(m["cosine"]).mean()),
                "rms_write": float(write.square().mean().sqrt()),
                "rms_dropout_write": float(off_diagonal(noise).square().mean().sqrt()),
                "rms_dropout_write_own": float(noise.diagonal().square().mean().sqrt()),
                "cosine": m["cosine"].tolist(),
                "gram": m["gram"].tolist(),
            }
    return out
