#!/usr/bin/env bash
# The main job: set up, then trace ROME's attention drift on the default model and drift's
# built-in cases (python analyses/trace.py): figures and numbers go to figures/trace/.
# Extra arguments go to analyses/trace.py (e.g. bash scripts/main.sh --limit 20).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# The main job runs alone: torch may use every core (drift's default on ≤ 2 cores is one thread,
# so that two test workers do not fight over them).
export DRIFT_THREADS="${DRIFT_THREADS:-$(nproc)}"
exec "$ROOT/.venv/bin/python" analyses/trace.py "$@"
