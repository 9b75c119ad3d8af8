#!/usr/bin/env bash
# The test command: sets up both virtual environments, then runs the whole suite.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k scoring).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
bash "$ROOT/scripts/setup-legacy.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest -q "$@"
