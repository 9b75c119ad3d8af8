# Sourced by scripts/validation_grid.sh and scripts/test_runs.sh: one `python -m drift eval` run per
# named point of an experiment, resumable, every point with the drift package of one pinned commit.
#
# The caller sets, then sources this file and calls `points_begin`:
#   DIR     the experiment's folder (results/validation, results/test): NAME.json per finished point,
#           NAME.json.partial.jsonl (eval's run log) while it runs, the script's log in $LOG
#   LOG     the log file everything is appended to
#   SPLIT   an array of eval's case options (--limit 1178 --shard 29/50)
#   PIN     the file holding the commit whose drift/ every point runs (written with HEAD when absent)
# Environment: D (the dev set), DRIFT_THREADS (default 1), NICE (default 10).
#
# `point NAME EDITOR EVAL-OPTIONS...` runs one point unless NAME.json exists; a partial point resumes at
# its next case (eval's own resume). A point that fails stops the script with its status.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$(realpath "${D:-$ROOT/../shared/data/counterfact-merged-dev.json}")"
PY="$ROOT/.venv/bin/python"
export DRIFT_THREADS="${DRIFT_THREADS:-1}"
export TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1  # no progress bars in the log

points_begin() {  # SCRIPT ARGS...: renice, redirect to $LOG, take $DIR's lock (one runner a folder)
    local script="$1"
    shift
    local want="${NICE:-10}"
    if [[ "$(nice)" -lt "$want" ]]; then  # the runs yield the CPU to anything else
        exec nice -n "$((want - $(nice)))" bash "$script" "$@"
    fi
    mkdir -p "$DIR"
    exec >>"$LOG" 2>&1
    exec 9>"$DIR/.runs.lock"
    if ! flock -n 9; then
        echo "$(date -u +%FT%TZ) another runner holds $DIR/.runs.lock; not starting a second"
        exit 1
    fi
    echo "$(date -u +%FT%TZ) $(basename "$script") (pid $$, DRIFT_THREADS=$DRIFT_THREADS, nice $(nice)) on $(hostname)"
}

snapshot() {  # the pinned commit's drift package, extracted once (git archive) into out/grid-src
    local commit src
    if [[ ! -s "$PIN" ]]; then  # a new experiment runs HEAD, and keeps to it
        git -C "$ROOT" rev-parse HEAD >"$PIN"
    fi
    commit="$(tr -d '[:space:]' <"$PIN")"
    src="$ROOT/out/grid-src/$commit"
    if [[ ! -f "$src/drift/__init__.py" ]]; then
        rm -rf "$src.tmp" && mkdir -p "$src.tmp"
        git -C "$ROOT" archive "$commit" drift | tar -x -C "$src.tmp"
        rm -rf "$src" && mv "$src.tmp" "$src"
    fi
    SRC="$src"
    COMMIT="$commit"
    export DRIFT_SOURCE_COMMIT="$commit"  # the runs' provenance names it (drift.runs.provenance)
}

point() {  # NAME EDITOR EVAL-OPTIONS...: one point, skipped when finished
    local name="$1" editor="$2" out="$DIR/$1.json" rc done
    shift 2
    if [[ -f "$out" ]]; then
        return 0
    fi
    snapshot
    done=0
    if [[ -f "$out.partial.jsonl" ]]; then
        done=$(($(wc -l <"$out.partial.jsonl") - 1))
    fi
    echo "$(date -u +%FT%TZ) start $name ($done cases logged before) at commit $COMMIT: $editor $*"
    rc=0
    (cd "$SRC" && "$PY" -m drift eval --data "$DATA" "${SPLIT[@]}" --editor "$editor" --no-fluency --quiet \
        "$@" --out "$out") || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "$(date -u +%FT%TZ) stop: $name exited with status $rc; re-run the script to resume"
        exit "$rc"
    fi
    echo "$(date -u +%FT%TZ) done $name"
}
