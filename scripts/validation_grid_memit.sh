#!/usr/bin/env bash
# MEMIT's own validation grid (docs/results.md, "Protocol for a new model"), by the same rule as
# ROME's: MEMIT alone and MEMIT+SADR on the validation split (--limit 1178 --shard 29/50 of the dev
# set: 24 cases, none of them a test case), one `python -m drift eval` run per point, into
# results/validation-memit/NAME.json; analyses/tables.py applies the rule with MEMIT alone (its
# preset, 20 steps) as the reference.
#
#   setsid nohup bash scripts/validation_grid_memit.sh >/dev/null 2>&1 &     # in the background
#   .venv/bin/python analyses/tables.py --results results/validation-memit  # progress, the rule
#
# Re-running the script resumes (scripts/eval_points.sh): a finished point is skipped, a partial one
# (NAME.json.partial.jsonl) continues at its next case. Every point runs the drift package of the
# commit in results/validation-memit/grid.commit (HEAD when first started). The points, most
# informative first: MEMIT alone; SADR at MEMIT's own 20 steps (as cheap as MEMIT alone; GPT-J's
# γ 5e-3 is one of them); MEMIT alone at 40 and 80 steps (the controls for SADR's extra steps);
# the 40- and 80-step rows; then the upward widening while the choice sits at the grid's edge.
# Everything printed goes to results/validation-memit/grid.log.
# Environment: D (the dev set), DRIFT_THREADS (default 1), NICE (default 10).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/results/validation-memit"
LOG="$DIR/grid.log"
PIN="$DIR/grid.commit"
SPLIT=(--limit 1178 --shard 29/50)
# shellcheck source=scripts/eval_points.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_points.sh"
points_begin "${BASH_SOURCE[0]}" "$@"

point memit_s20 memit
for g in 0.005 0.01 0.04 0.08; do point "memit_sadr_g${g}_s20" memit --sadr "$g" --steps 20; done
point memit_s40 memit --steps 40
point memit_s80 memit --steps 80
for s in 40 80; do
    for g in 0.005 0.01 0.04 0.08; do point "memit_sadr_g${g}_s${s}" memit --sadr "$g" --steps "$s"; done
done
while true; do  # widened upward: while the rule's choice is the largest γ of its row, the next γ (× 2)
    if ! widen="$(cd "$ROOT" && "$PY" analyses/tables.py --results "$DIR" --widen)"; then
        echo "$(date -u +%FT%TZ) stop: analyses/tables.py --widen failed; fix it and re-run the script"
        exit 1
    fi
    [[ -n "$widen" ]] || break
    read -r steps g <<<"$widen"
    [[ -f "$DIR/memit_sadr_g${g}_s${steps}.json" ]] && break
    point "memit_sadr_g${g}_s${steps}" memit --sadr "$g" --steps "$steps"
done
echo "$(date -u +%FT%TZ) MEMIT's validation grid finished"
(cd "$ROOT" && "$PY" analyses/tables.py --results "$DIR") || true
