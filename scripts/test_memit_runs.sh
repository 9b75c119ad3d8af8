#!/usr/bin/env bash
# Table 3's MEMIT rows at MEMIT's own validation choice (docs/results.md, "Left for a GPU": the
# rows are CPU work on a fast machine): sweeps/test-memit.toml into results/test-memit/NAME.json,
# with the drift of MEMIT's validation grid (results/validation-memit/grid.commit), so its
# validation and test rows are one version of drift.
#
#   setsid nohup bash scripts/test_memit_runs.sh >/dev/null 2>&1 &     # twice on two cores; resumes
#   .venv/bin/python analyses/tables.py --results results/test-memit --test   # paired by case
#
# Re-running resumes (scripts/eval_points.sh): a finished run is kept, a partial one continues.
# Everything printed goes to results/test-memit/runs.log.
# Environment: D (the dev set), DRIFT_THREADS (default 1), NICE (default 10).
set -euo pipefail
RESULTS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/results"
DIR="$RESULTS/test-memit"
LOG="$DIR/runs.log"
PIN="$RESULTS/validation-memit/grid.commit"
LOCK=""  # a second runner on the second core takes the next run no runner holds
# shellcheck source=scripts/eval_points.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_points.sh"
points_begin "${BASH_SOURCE[0]}" "$@"
grid "$ROOT/sweeps/test-memit.toml"
echo "$(date -u +%FT%TZ) this runner has no run left"
