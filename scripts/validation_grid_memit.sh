#!/usr/bin/env bash
# MEMIT's own validation grid (docs/results.md, "Protocol for a new model"), by the same rule as
# ROME's: sweeps/validation-memit.toml (MEMIT alone and MEMIT+SADR on the validation split, --limit
# 1178 --shard 29/50 of the dev set: 24 cases, none of them a test case), run by `python -m drift
# sweep` into results/validation-memit/NAME.json; analyses/tables.py applies the rule with MEMIT
# alone (its preset, 20 steps) as the reference.
#
#   setsid nohup bash scripts/validation_grid_memit.sh >/dev/null 2>&1 &     # in the background
#   (started twice on two cores, the two runners share the runs: a lock per run)
#   .venv/bin/python analyses/tables.py --results results/validation-memit  # progress, the rule
#
# Re-running the script resumes (scripts/eval_points.sh, `grid`): a finished run is kept, a partial
# one continues at its next case. Every run uses the drift package of the commit in
# results/validation-memit/grid.commit (HEAD when first started; a commit from before sweep files
# took a split runs the file's runs one by one through `eval`). After the file's runs, the upward
# widening while the choice sits at the grid's edge. Everything printed goes to
# results/validation-memit/grid.log.
# Environment: D (the dev set), DRIFT_THREADS (default 1), NICE (default 10).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/results/validation-memit"
LOG="$DIR/grid.log"
PIN="$DIR/grid.commit"
LOCK=""  # several runners may share the grid (one a core): each run is taken by one of them
# shellcheck source=scripts/eval_points.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_points.sh"
points_begin "${BASH_SOURCE[0]}" "$@"
SWEEP="$ROOT/sweeps/validation-memit.toml"

grid "$SWEEP"
widen "$SWEEP" memit_sadr  # upward while the choice sits at the grid's edge
if [[ -n "$(cd "$ROOT" && "$PY" analyses/tables.py --results "$DIR" --chosen)" ]]; then
    echo "$(date -u +%FT%TZ) MEMIT's validation grid finished"
else
    echo "$(date -u +%FT%TZ) this runner has no run left; the grid finishes with the others' runs"
fi
(cd "$ROOT" && "$PY" analyses/tables.py --results "$DIR") || true
