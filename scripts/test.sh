#!/usr/bin/env bash
# The test command: sets up both virtual environments, fills the model cache, then runs the whole
# suite. Extra arguments go to pytest (e.g. bash scripts/test.sh -k scoring).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# The one-time work of the real model's first edits (conversion, key statistics of the editors'
# layers, context prefixes) goes into the user's cache while the legacy venv installs (pip keeps
# one core busy, this the other); the suite links that cache and only reads it. Seconds when done.
PREPARE_LOG="$(mktemp)"
.venv/bin/python -m drift -q prepare >"$PREPARE_LOG" 2>&1 &
PREPARE=$!
bash "$ROOT/scripts/setup-legacy.sh"
bash "$ROOT/scripts/setup-browser.sh"  # headless Chromium for the HTML report's test
if ! wait "$PREPARE"; then
    cat "$PREPARE_LOG" >&2
    echo "test.sh: python -m drift prepare failed (above)" >&2
    exit 1
fi
rm -f "$PREPARE_LOG"
export DRIFT_REQUIRE_LEGACY=1  # built just above, so its absence is a failure here
export DRIFT_REQUIRE_BROWSER=1  # installed just above, likewise
# two workers; tests sharing one expensive fixture (xdist_group) run on the same worker
exec "$ROOT/.venv/bin/python" -m pytest -q -n 2 --dist loadgroup "$@"
