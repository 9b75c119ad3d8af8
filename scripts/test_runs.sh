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
# so test and validation rows are one version of drift. The points: ROME alone at its preset, then
# ROME at 80 steps (the control for SADR's extra steps) and GPT-J's SADR setting for
# each editor (App. C.2: ROME γ 1e-2 at 80 steps, MEMIT 5e-3 at 20, PMET 8e-2 at 40), MEMIT and PMET
# at their presets. Once the grid's choice is final (`analyses/tables.py --chosen`: the base grid
# finished and no widening pending), ROME+SADR at the chosen γ and steps and ROME alone at those
# steps run right after ROME alone, and MEMIT and PMET with SADR at the chosen γ and their own GPT-J
# step counts at the end. Before the choice is final the script runs the rest and says so; running
# it again later adds the chosen points.
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

chosen_points() {  # the validation grid's choice, once final: SADR at it, ROME at its steps, MEMIT and PMET
    local chosen steps g
    if ! chosen="$(cd "$ROOT" && "$PY" analyses/tables.py --results "$RESULTS/validation" --chosen)"; then
        echo "$(date -u +%FT%TZ) stop: analyses/tables.py --chosen failed; fix it and re-run the script"
        exit 1
    fi
    if [[ -z "$chosen" ]]; then
        echo "$(date -u +%FT%TZ) the validation grid has no final choice yet (or no point passed its rule)"
        return 1
    fi
    read -r steps g <<<"$chosen"
    echo "$(date -u +%FT%TZ) the validation grid chose γ $g at $steps steps"
    point "rome_sadr_g${g}_s${steps}" rome --sadr "$g" --steps "$steps"
    [[ "$steps" == 20 || "$steps" == 80 ]] || point "rome_s${steps}" rome --steps "$steps"
    CHOSEN=("$g" "$steps")
}

# ROME alone, then the grid's choice as soon as it is final (the question Table 3 answers first),
# then the fixed settings, then MEMIT and PMET at the chosen γ
CHOSEN=()
point rome_s20 rome
chosen_points || true
point rome_sadr_g0.01_s80 rome --sadr 0.01 --steps 80
point rome_s80 rome --steps 80
point memit memit
point memit_sadr_g0.005_s20 memit --sadr 0.005 --steps 20
point pmet pmet
point pmet_sadr_g0.08_s40 pmet --sadr 0.08 --steps 40
if [[ ${#CHOSEN[@]} -eq 0 ]] && ! chosen_points; then
    echo "$(date -u +%FT%TZ) run again once the grid's choice is final"
    exit 0
fi
point "memit_sadr_g${CHOSEN[0]}_s20" memit --sadr "${CHOSEN[0]}" --steps 20
point "pmet_sadr_g${CHOSEN[0]}_s40" pmet --sadr "${CHOSEN[0]}" --steps 40
echo "$(date -u +%FT%TZ) test runs finished"
