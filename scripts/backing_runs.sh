#!/usr/bin/env bash
# The runs behind README's and docs/results.md's numbers that had no committed file, cheapest first
# (docs/results.md names each):
#   1. the unedited model on Table 3's 59 test cases (RS 76.9, DNS 49.2): results/test/none.json,
#      with the drift of Table 3's rows (scripts/eval_points.sh, results/validation/grid.commit);
#   2. the main job's trace on the first 10 built-in cases (0.654 → 0.311 → 0.513):
#      results/trace/trace.json (`python -m drift trace`, as scripts/main.sh runs it);
#   3. what SADR does inside ROME on the same cases, at this model's chosen point (γ 4e-2, 20 steps)
#      and at the paper's GPT-J setting (γ 1e-2, 80 steps; 0.311 → 0.428):
#      results/mechanism/{chosen,paper}.json (`python -m drift mechanism`).
#
#   setsid nohup bash scripts/backing_runs.sh >/dev/null 2>&1 &     # in the background; resumes
#
# A finished step is skipped when run again (the eval resumes case by case; trace keeps its finished
# cases; a mechanism run starts over). Steps 2-3 run the drift package of the commit in
# results/mechanism/run.commit (HEAD when first started), extracted to out/grid-src/COMMIT.
# Everything printed goes to results/backing.log. Environment: D, DRIFT_THREADS (default 1), NICE (10).
set -euo pipefail
RESULTS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/results"
DIR="$RESULTS/test"
LOG="$RESULTS/backing.log"
PIN="$RESULTS/validation/grid.commit"
SPLIT=(--limit 1178 --shard 20/20)
# shellcheck source=scripts/eval_points.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_points.sh"
points_begin "${BASH_SOURCE[0]}" "$@"

point none none  # 1. the unedited model, Table 3's cases and drift

# 2-3 at this branch's commit
HEAD_PIN="$RESULTS/mechanism/run.commit"
mkdir -p "$RESULTS/mechanism" "$RESULTS/trace"
[[ -s "$HEAD_PIN" ]] || git -C "$ROOT" rev-parse HEAD >"$HEAD_PIN"
PIN="$HEAD_PIN"
snapshot
run_in() {  # NAME ARGS...: `python -m drift ARGS` in the pinned package
    local name="$1"
    shift
    echo "$(date -u +%FT%TZ) start $name at commit $COMMIT: $*"
    (cd "$SRC" && "$PY" -m drift "$@") || { echo "$(date -u +%FT%TZ) stop: $name failed"; exit 1; }
    echo "$(date -u +%FT%TZ) done $name"
}
if [[ ! -f "$RESULTS/trace/trace.json" ]]; then
    run_in trace trace --out "$ROOT/out/trace" --quiet
    cp "$ROOT/out/trace/trace.json" "$RESULTS/trace/trace.json"
fi
if [[ ! -f "$RESULTS/mechanism/chosen.json" ]]; then
    run_in mechanism-chosen mechanism --limit 10 --sadr 0.04 --steps 20 --out "$ROOT/out/mechanism-chosen" --quiet
    cp "$ROOT/out/mechanism-chosen/sadr_mechanism.json" "$RESULTS/mechanism/chosen.json"
fi
if [[ ! -f "$RESULTS/mechanism/paper.json" ]]; then
    run_in mechanism-paper mechanism --limit 10 --out "$ROOT/out/mechanism-paper" --quiet
    cp "$ROOT/out/mechanism-paper/sadr_mechanism.json" "$RESULTS/mechanism/paper.json"
fi
echo "$(date -u +%FT%TZ) backing runs finished"
