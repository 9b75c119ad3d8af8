#!/usr/bin/env bash
# Build .venv-peer: the environment in which benchmarks/peer_rome.py runs the ROME of the paper's own
# code (an EasyEdit fork, github.com/PinzhengWang322/Reveal_Attention_Drift) for
# `benchmarks/bench.py peer --reference DIR`. Nothing of that code is copied into this repository:
# peer_rome.py imports it from DIR at run time.
#
#   bash scripts/setup-peer.sh DIR
#
# DIR: a checkout of the reference (a folder holding easyeditor/models/rome/compute_v.py), or a git
# repository of it (a bare clone or fetched mirror): then its easyeditor/ and hparams/ at HEAD are
# checked out once under ${DRIFT_CACHE:-~/.cache/drift}/peer/reference-<commit>, outside this
# repository, and that folder is printed as the DIR to pass to bench.py.
#
# Only what the reference's ROME imports is installed: torch (the same CPU wheel as drift's .venv,
# so the two sides differ in their code, not in their torch build), transformers 4.40.1 with
# tokenizers 0.19.1 (the reference's requirements.txt), numpy < 2, PyYAML, safetensors, tqdm.
# Not installed: `datasets` (only used to compute key statistics, which peer_rome.py hands over
# from drift's cache) and matplotlib (compute_v.py imports one unused name from it); peer_rome.py
# puts stand-ins for both in sys.modules. Idempotent: a stamp holding a hash of this script skips
# a finished build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:?usage: bash scripts/setup-peer.sh DIR (a checkout or git repository of the reference code)}"
VENV="$ROOT/.venv-peer"

# The reference: a checkout, or a git repository to check its code out of (outside this repository).
if [[ ! -f "$DIR/easyeditor/models/rome/compute_v.py" ]]; then
    if git -C "$DIR" rev-parse --git-dir >/dev/null 2>&1; then
        COMMIT="$(git -C "$DIR" rev-parse HEAD)"
        OUT="${DRIFT_CACHE:-$HOME/.cache/drift}/peer/reference-${COMMIT:0:12}"
        if [[ ! -f "$OUT/easyeditor/models/rome/compute_v.py" ]]; then
            mkdir -p "$OUT"
            # Only the code and the hparams: the repository's large result files may be absent.
            git -C "$DIR" archive "$COMMIT" easyeditor hparams requirements.txt \
                2> >(grep -v "^error: invalid object" >&2) | tar -x -C "$OUT"
        fi
        echo "setup-peer: the reference's code at $COMMIT is in $OUT (pass it as --reference)"
        DIR="$OUT"
    else
        echo "setup-peer: $DIR holds no easyeditor/models/rome/compute_v.py and is no git repository" >&2
        exit 1
    fi
fi

STAMP="$VENV/.peer-setup-stamp"
HASH="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]] \
    && "$VENV/bin/python" -c "import torch, transformers, yaml, safetensors, numpy" 2>/dev/null; then
    exit 0
fi
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
echo "setup-peer: building $VENV with $("$PY" --version)"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
pip_install() {
    "$VENV/bin/python" -m pip --quiet --disable-pip-version-check install "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
# torch first and pinned, so nothing later pulls a CUDA build (drift's .venv has the same).
pip_install "torch==2.13.0"
pip_install "torch==2.13.0" "transformers==4.40.1" "tokenizers==0.19.1" "numpy<2" pyyaml safetensors tqdm
echo "$HASH" > "$STAMP"
