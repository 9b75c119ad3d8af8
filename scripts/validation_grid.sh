#!/usr/bin/env bash
# The validation grid of docs/results.md ("Protocol for a new model") and the points of Fig. 6 and
# Fig. 7: sweeps/validation.toml (ROME alone and ROME+SADR on the validation split, --limit 1178
# --shard 29/50 of the dev set: 24 cases, none of them a test case), run by `python -m drift sweep`
# into results/validation/NAME.json, then the rule's upward widening.
#
#   setsid nohup bash scripts/validation_grid.sh >/dev/null 2>&1 &     # in the background
#   .venv/bin/python analyses/tables.py                                  # progress and the table
#
# Re-running the script resumes: finished runs are kept, an unfinished one continues at its next case
# (scripts/eval_points.sh, `grid`). When the file's grid is done, the rule's choice is widened upward
# in γ while it sits at the grid's edge (analyses/tables.py --widen), one run at a time. Everything
# the script prints goes to results/validation/grid.log.
#
# Every run uses one version of drift: the commit in results/validation/grid.commit (written with
# HEAD when the grid starts), its drift/ package extracted to out/grid-src/COMMIT, so edits in the
# working tree or later commits never mix into the grid. Moving the grid to another commit is a new
# grid: set results/validation aside and start again. The log names each run's commit. (The
# committed grid's commit predates sweep files with a split, so its runs go one by one through
# `eval`, as they were run.)
# Environment: D (the dev set; its absolute path is part of each run's configuration),
# DRIFT_THREADS (default 1), NICE (default 10).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/results/validation"
LOG="$DIR/grid.log"
PIN="$DIR/grid.commit"
# shellcheck source=scripts/eval_points.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_points.sh"
points_begin "${BASH_SOURCE[0]}" "$@"
SWEEP="$ROOT/sweeps/validation.toml"

grid "$SWEEP"
widen "$SWEEP" rome_sadr  # upward while the choice sits at the grid's edge
echo "$(date -u +%FT%TZ) validation grid finished"
(cd "$ROOT" && "$PY" analyses/tables.py --results "$DIR") || true
