#!/usr/bin/env bash
# The 100-edit table of docs/results.md (AdaPLE paper §6): `python -m drift sequential` on the first
# 100 dev cases, its 8 runs (MEMIT and AdaPLE, drop-and-rescale off and on, 100 stacked edits each,
# then AdaPLE's drop-rate sweep at 10 edits) as --part I/8 in LANES processes, each run's record
# appended to results/sequential/pI/sequential-runs.jsonl when it ends.
#
#   setsid nohup bash scripts/sequential_runs.sh >/dev/null 2>&1 &     # in the background
#   .venv/bin/python -m drift sequential --join results/sequential/p* --out-dir figures/sequential
#
# A run that is stopped resumes after its last finished edit on the same machine (its state,
# .partial-KEY/state.pt, holds weights and is not committed); a finished run is never redone.
# Environment: LANES (default 2), DRIFT_THREADS (default 1), NICE (default 10).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/results/sequential"
export DRIFT_THREADS="${DRIFT_THREADS:-1}" TQDM_DISABLE=1
mkdir -p "$DIR"
lane() {  # PARTS...: one after another
    local i
    for i in "$@"; do
        mkdir -p "$DIR/p$i"
        echo "$(date -u +%FT%TZ) start part $i/8 at $(git -C "$ROOT" rev-parse --short HEAD)" >>"$DIR/runs.log"
        nice -n "${NICE:-10}" "$ROOT/.venv/bin/python" -m drift sequential --part "$i/8" --device cpu \
            --out-dir "$DIR/p$i" --quiet >>"$DIR/p$i/log.txt" 2>&1
        echo "$(date -u +%FT%TZ) end part $i/8 (status $?)" >>"$DIR/runs.log"
    done
}
if [[ "${LANES:-2}" == 1 ]]; then
    lane 1 4 2 3 5 6 7 8
else
    lane 1 2 5 7 &
    lane 4 3 6 8 &
    wait
fi
