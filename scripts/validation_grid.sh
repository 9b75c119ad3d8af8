#!/usr/bin/env bash
# The validation grid of docs/results.md ("Protocol for a new model"): ROME alone and ROME+SADR
# on the validation split (--limit 1178 --shard 29/50 of the dev set: 24 cases, none of them a
# test case), one `python -m drift eval` run per point, into results/validation/NAME.json.
#
#   setsid nohup bash scripts/validation_grid.sh >/dev/null 2>&1 &     # in the background
#   .venv/bin/python analyses/tables.py                                  # progress and the table
#
# Re-running the script resumes: a point whose rome results file exists is skipped, an unfinished
# point resumes rome from its log (NAME.json.partial.jsonl: the configuration in its header, one line
# per finished case), the others start in the order below (the most informative first). When the
# fixed grid is done, the rule's choice is widened upward in γ while it sits at the grid's edge
# (analyses/tables.py --widen). Everything the script prints goes to results/validation/grid.log.
#
# Every point runs rome one version of drift: the commit in results/validation/grid.commit (written
# with HEAD when the grid starts), its drift/ package extracted to out/grid-src/COMMIT, so edits
# in the working tree or later commits never mix into the grid. Moving the grid to another commit
# is a new grid: set results/validation aside and start again. The log names each point's commit.
# Environment: D (the dev set; its absolute path is part of each run's configuration),
# DRIFT_THREADS (default 1), NICE (default 10).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/results/validation"
LOG="$DIR/grid.log"
PIN="$DIR/grid.commit"
SPLIT=(--limit 1178 --shard 29/50)
# shellcheck source=scripts/eval_points.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_points.sh"
points_begin "${BASH_SOURCE[0]}" "$@"

# 1. the reference of the selection rule, then the paper's GPT-J setting and Llama-3-8B's γ
point rome_s20 rome
point rome_sadr_g0.01_s80 rome --sadr 0.01 --steps 80
point rome_sadr_g0.04_s80 rome --sadr 0.04 --steps 80
# 2. ROME alone at 80 steps: what the extra steps do without SADR
point rome_s80 rome --steps 80
# 3. SADR at ROME's own 20 steps (cheap: as fast as ROME)
for g in 0.01 0.04 0.08 0.005; do point "rome_sadr_g${g}_s20" rome --sadr "$g" --steps 20; done
# 4. the rest of the 80-step row, then the 40-step row with its control
for g in 0.08 0.005; do point "rome_sadr_g${g}_s80" rome --sadr "$g" --steps 80; done
point rome_s40 rome --steps 40
for g in 0.01 0.04 0.08 0.005; do point "rome_sadr_g${g}_s40" rome --sadr "$g" --steps 40; done
# 5. Fig. 7: ROME's own knobs at its 20 steps (learning rate 0.5 and ω 0.0625 are rome_s20)
point rome_lr0.05_s20 rome --hp lr=0.05
point rome_lr0.2_s20 rome --hp lr=0.2
point rome_kl1_s20 rome --hp kl_factor=1.0
point rome_kl4_s20 rome --hp kl_factor=4.0
# 6. Fig. 6: SADR on every head instead of the drifting ones, at ROME's 20 steps
for g in 0.01 0.04 0.08 0.005; do point "rome_sadr_all_g${g}_s20" rome --sadr "$g" --sadr-heads all --steps 20; done
# 7. widened upward: while the rule's choice is the largest γ of its row, the next γ (× 2)
while true; do
    if ! widen="$(cd "$ROOT" && "$PY" analyses/tables.py --results "$DIR" --widen)"; then
        echo "$(date -u +%FT%TZ) stop: analyses/tables.py --widen failed; fix it and re-run the script"
        exit 1
    fi
    [[ -n "$widen" ]] || break
    read -r steps g <<<"$widen"
    [[ -f "$DIR/rome_sadr_g${g}_s${steps}.json" ]] && break  # already run: nothing left to widen
    point "rome_sadr_g${g}_s${steps}" rome --sadr "$g" --steps "$steps"
done
echo "$(date -u +%FT%TZ) validation grid finished"
(cd "$ROOT" && "$PY" analyses/tables.py --results "$DIR") || true
