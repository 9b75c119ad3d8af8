#!/usr/bin/env bash
# Table 3 of docs/results.md on the unseen test cases (--limit 1178 --shard 20/20 of the dev set: 59
# cases, none of them a validation case): each editor alone and with SADR, at GPT-J's setting and at
# the setting the validation grid chose, one `python -m drift eval` run per point, into
# results/test/NAME.json.
#
#   setsid nohup bash scripts/test_runs.sh >/dev/null 2>&1 &     # in the background; resumes
#   .venv/bin/python analyses/tables.py --results results/test --test   # the table, paired by case
#
# The points run the drift package of the validation grid's commit (results/validation/grid.commit),
# so test and validation rows are one version of drift. The settings that need no choice run first:
# ROME at its preset and at 80 steps (the control for SADR's extra steps), GPT-J's SADR setting for
# each editor (App. C.2: ROME γ 1e-2 at 80 steps, MEMIT 5e-3 at 20, PMET 8e-2 at 40), MEMIT and PMET
# at their presets. Then, once the grid's choice is final (`analyses/tables.py --chosen`: the base
# grid finished and no widening pending), ROME+SADR at the chosen γ and steps, ROME alone at those
# steps, and MEMIT and PMET with SADR at the chosen γ and their own GPT-J step counts. Before that the
# script stops after the fixed points and says so; running it again later adds the chosen ones.
# Environment: D (the dev set), DRIFT_THREADS (default 1), NICE (default 10).
set -euo pipefail
RESULTS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/results"
DIR="$RESULTS/test"
LOG="$DIR/runs.log"
PIN="$RESULTS/validation/grid.commit"
SPLIT=(--limit 1178 --shard 20/20)
# shellcheck source=scripts/eval_points.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_points.sh"
points_begin "${BASH_SOURCE[0]}" "$@"

# 1. fixed settings: ROME, then GPT-J's SADR setting and its control, then MEMIT and PMET
point rome_s20 rome
point rome_sadr_g0.01_s80 rome --sadr 0.01 --steps 80
point rome_s80 rome --steps 80
point memit memit
point memit_sadr_g0.005_s20 memit --sadr 0.005 --steps 20
point pmet pmet
point pmet_sadr_g0.08_s40 pmet --sadr 0.08 --steps 40

# 2. the validation grid's choice, once final
if ! chosen="$(cd "$ROOT" && "$PY" analyses/tables.py --results "$RESULTS/validation" --chosen)"; then
    echo "$(date -u +%FT%TZ) stop: analyses/tables.py --chosen failed; fix it and re-run the script"
    exit 1
fi
if [[ -z "$chosen" ]]; then
    echo "$(date -u +%FT%TZ) the validation grid has no final choice yet (or no point passed its rule); run again later"
    exit 0
fi
read -r steps g <<<"$chosen"
echo "$(date -u +%FT%TZ) the validation grid chose γ $g at $steps steps"
point "rome_sadr_g${g}_s${steps}" rome --sadr "$g" --steps "$steps"
[[ "$steps" == 20 || "$steps" == 80 ]] || point "rome_s${steps}" rome --steps "$steps"
point "memit_sadr_g${g}_s20" memit --sadr "$g" --steps 20
point "pmet_sadr_g${g}_s40" pmet --sadr "$g" --steps 40
echo "$(date -u +%FT%TZ) test runs finished"
