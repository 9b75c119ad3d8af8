#!/usr/bin/env bash
# Sequential editing as attenuation (docs/results.md, "Retention of a fixed early set"): the key
# overlap of the first 100 dev cases' subject keys against its chance level, then MEMIT and AdaPLE
# with drop-and-rescale (the AdaPLE paper's comparison), then MEMIT with and AdaPLE without it: 100
# stacked edits each, the first 10 edits re-scored after 10, 25, 50 and 100 edits
# (`python -m drift sequential --retention 10`), into results/sequential-retention/.
#
#   setsid nohup bash scripts/retention_runs.sh >/dev/null 2>&1 &     # in the background; resumes
#   .venv/bin/python analyses/tables.py --results results/sequential-retention --retention
#
# Each checkpoint is appended to sequential-checkpoints.jsonl as it ends (per-case rows of the 10
# early edits) and each finished run to sequential-runs.jsonl; both are committed as they grow.
# A stopped run resumes after its last finished edit on the same machine (its weights are in
# .partial-KEY/state.pt, not committed); elsewhere it starts over. Every run uses the drift package
# of the commit in results/sequential-retention/run.commit (HEAD when first started), extracted to
# out/grid-src/COMMIT. Everything printed goes to results/sequential-retention/runs.log.
# Environment: D (the dev set), DRIFT_THREADS (default 1), NICE (default 10).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/results/sequential-retention"
DATA="$(realpath "${D:-$ROOT/../shared/data/counterfact-merged-dev.json}")"
PY="$ROOT/.venv/bin/python"
export DRIFT_THREADS="${DRIFT_THREADS:-1}" TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
mkdir -p "$DIR"
exec >>"$DIR/runs.log" 2>&1
exec 9>"$DIR/.runs.lock"
flock -n 9 || { echo "$(date -u +%FT%TZ) another runner holds $DIR/.runs.lock"; exit 1; }
[[ -s "$DIR/run.commit" ]] || git -C "$ROOT" rev-parse HEAD >"$DIR/run.commit"
COMMIT="$(tr -d '[:space:]' <"$DIR/run.commit")"
SRC="$ROOT/out/grid-src/$COMMIT"
if [[ ! -f "$SRC/drift/__init__.py" ]]; then
    rm -rf "$SRC.tmp" && mkdir -p "$SRC.tmp" && git -C "$ROOT" archive "$COMMIT" drift | tar -x -C "$SRC.tmp"
    rm -rf "$SRC" && mv "$SRC.tmp" "$SRC"
fi
export DRIFT_SOURCE_COMMIT="$COMMIT"
seq_run() {  # ARGS...: one `drift sequential` call in the pinned package, at nice NICE
    echo "$(date -u +%FT%TZ) start $* at $COMMIT"
    (cd "$SRC" && nice -n "${NICE:-10}" "$PY" -m drift sequential --data "$DATA" --device cpu --edits 100 \
        --editors memit,adaple --out "$DIR" --quiet "$@")
    echo "$(date -u +%FT%TZ) end $* (status $?)"
}
[[ -f "$DIR/key-overlap.json" ]] || seq_run --key-overlap
# jobs in order: MEMIT, MEMIT +DR, AdaPLE, AdaPLE +DR (--part I/4 takes the I-th)
for part in 1 4 2 3; do
    seq_run --checkpoints 10,25,50,100 --retention 10 --no-sweep --part "$part/4"
done
echo "$(date -u +%FT%TZ) retention runs finished"
