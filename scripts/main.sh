#!/usr/bin/env bash
# The main job: set up, then evaluate the unedited default model on drift's built-in cases and
# show a few facts it knows. Results go to results/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
"$ROOT/.venv/bin/python" -m drift demo
"$ROOT/.venv/bin/python" -m drift eval --data builtin --editor none --out results/eval-builtin-none.json "$@"
