#!/usr/bin/env bash
# Table 3 of docs/results.md on the unseen test cases: sweeps/test.toml (--limit 1178 --shard 20/20
# of the dev set: 59 cases, none of them a validation case; each editor alone and with SADR, at
# GPT-J's setting and at the setting the validation grid chose), run by `python -m drift sweep` into
# results/test/NAME.json.
#
#   setsid nohup bash scripts/test_runs.sh >/dev/null 2>&1 &     # in the background; resumes
#   .venv/bin/python analyses/tables.py --results results/test --test   # the table, paired by case
#
# The runs use the drift package of the validation grid's commit (results/validation/grid.commit),
# so test and validation rows are one version of drift (that commit predates sweep files with a
# split: the file's runs go one by one through `eval`, each resumed from its log). The validation
# grid's choice is written into sweeps/test.toml (ROME, MEMIT and PMET with SADR at its γ); the
# script says so when analyses/tables.py --chosen names a point the file lacks.
# Environment: D (the dev set), DRIFT_THREADS (default 1), NICE (default 10).
set -euo pipefail
RESULTS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/results"
DIR="$RESULTS/test"
LOG="$DIR/runs.log"
PIN="$RESULTS/validation/grid.commit"
LOCK=""  # a second runner on the second core takes the next run no runner holds
# shellcheck source=scripts/eval_points.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_points.sh"
points_begin "${BASH_SOURCE[0]}" "$@"
SWEEP="$ROOT/sweeps/test.toml"

if ! chosen="$(cd "$ROOT" && "$PY" analyses/tables.py --results "$RESULTS/validation" --chosen)"; then
    echo "$(date -u +%FT%TZ) stop: analyses/tables.py --chosen failed; fix it and re-run the script"
    exit 1
fi
if [[ -z "$chosen" ]]; then
    echo "$(date -u +%FT%TZ) the validation grid has no final choice yet (or no point passed its rule)"
else
    read -r steps g <<<"$chosen"
    echo "$(date -u +%FT%TZ) the validation grid chose γ $g at $steps steps"
    if ! grep -q "^name = \"rome_sadr_g${g}_s${steps}\"" "$SWEEP"; then
        echo "$(date -u +%FT%TZ) $SWEEP has no run at that choice: add ROME, MEMIT and PMET with SADR at it"
    fi
fi
grid "$SWEEP"
echo "$(date -u +%FT%TZ) test runs finished"
