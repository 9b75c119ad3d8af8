"""``python -m drift prepare``: fill the cache before the first edit: convert the model, compute
the key statistics of every editor's default layers in one pass, and sample the context prefixes
the editors put before a rewrite prompt.

Each of these is computed on first use anyway and cached (``drift.util.store.cache_root()``); doing it
up front moves minutes of one-time work out of the first edit, the first notebook or the first
test, and lets it overlap other set-up (``scripts/test.sh`` runs it beside the legacy
environment's installation). Already cached pieces cost a second to check.

Example:
    >>> import drift
    >>> stats_layers(drift.load_model(), ("rome", "memit"))   # doctest: +SKIP
    [3, 4, 5]
    >>> stats_layers(model)                                    # the 2-layer tiny model's presets
    [0]
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Sequence

from drift.cli import options as O

if TYPE_CHECKING:
    from drift.model.adapter import Model

EDITORS = ("rome", "memit", "pmet", "adaple")


def stats_layers(model: Model, editors: Sequence[str] = EDITORS) -> list[int]:
    """The layers whose key statistics ``editors`` use with ``model``'s presets, sorted."""
    from drift.editors.adaple import preset as adaple_preset
    from drift.editors.memit import preset as memit_preset
    from drift.editors.pmet import preset as pmet_preset
    from drift.editors.rome import preset as rome_preset

    layers: set[int] = set()
    for name in editors:
        if name in ("rome", "rome-awd"):
            layers.add(rome_preset(model).layer)
        elif name == "memit":
            layers.update(memit_preset(model).layers)
        elif name == "pmet":
            layers.update(pmet_preset(model).layers)
        elif name == "adaple":
            layers.update(adaple_preset(model).layers)
        else:
            raise ValueError(f"prepare: unknown editor {name!r}; one of {', '.join(EDITORS)}")
    return sorted(layers)


def prepare(model: Model, editors: Sequence[str] = EDITORS, *, verbose: bool | None = None) -> dict:
    """Compute and cache what ``editors`` need for ``model``: key statistics of their preset layers
    (one pass for all of them) and the generated context prefixes of ROME and of MEMIT/PMET.
    Returns what was prepared, with the seconds each part took."""
    from drift.editors.context import MEMIT_CONTEXT, ROME_CONTEXT, generated_prefixes
    from drift.editors.stats import key_second_moment

    layers = stats_layers(model, editors)
    t0 = time.perf_counter()
    key_second_moment(model, layers, verbose=verbose)
    t1 = time.perf_counter()
    contexts = []
    if any(e in ("rome", "rome-awd") for e in editors):
        contexts.append(ROME_CONTEXT)
    if any(e in ("memit", "pmet", "adaple") for e in editors):
        contexts.append(MEMIT_CONTEXT)
    for context in contexts:
        generated_prefixes(model, context)
    t2 = time.perf_counter()
    return {
        "model": model.name,
        "layers": layers,
        "contexts": [list(map(list, c)) for c in contexts],
        "seconds": {"key_statistics": round(t1 - t0, 1), "prefixes": round(t2 - t1, 1)},
    }


def add_options(p: argparse.ArgumentParser) -> None:
    O.add_model(p, device=False)  # key statistics are cached per dtype: prepare the one the runs will use
    p.add_argument(
        "--editors",
        type=O.editor_list,
        default="rome,memit,pmet,adaple",
        help=O.EDITORS_HELP + " (default: rome,memit,pmet,adaple)",
    )


def run(args: argparse.Namespace) -> int:
    """The one-time work of a model's first edits, done now and cached."""
    import drift

    done = prepare(drift.load_model(args.model, dtype=args.dtype), args.editors)
    secs = done["seconds"]
    print(
        f"prepared {done['model']}: key statistics of layers {done['layers']} ({secs['key_statistics']} s), "
        f"context prefixes ({secs['prefixes']} s)"
    )
    return 0
