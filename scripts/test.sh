#!/usr/bin/env bash
# The test command: sets up both virtual environments, then runs the whole suite.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k scoring).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/setup-legacy.sh"
cd "$ROOT"
export DRIFT_REQUIRE_LEGACY=1  # built just above, so its absence is a failure here
# two workers; tests sharing one expensive fixture (xdist_group) run on the same worker
exec "$ROOT/.venv/bin/python" -m pytest -q -n 2 --dist loadgroup "$@"
