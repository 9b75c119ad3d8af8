# Sourced by the scripts that run an experiment (scripts/validation_grid.sh, test_runs.sh, seed_runs.sh,
# ...): its runs resumable, every run with the drift package of one pinned commit.
#
# The caller sets, then sources this file and calls `points_begin`:
#   DIR     the experiment's folder (results/validation, results/test): NAME.json per finished run,
#           NAME.json.partial.jsonl (eval's run log) or .parts/NAME/ (sweep's chunk logs) while it
#           runs, the script's log in $LOG
#   LOG     the log file everything is appended to
#   SPLIT   an array of eval's case options (--limit 1178 --shard 29/50), for `point`
#   PIN     the file holding the commit whose drift/ every run uses (written with HEAD when absent)
#   LOCK    (optional) the lock that keeps a second runner out, $DIR/.runs.lock by default; empty
#           lets several runners share the folder, each run taken by one of them (`run_eval` locks
#           each run; scripts/audit_runs.sh locks each shard)
# Environment: D (the dev set), DRIFT_THREADS (default 1), NICE (default 10).
#
# `grid FILE` runs the sweep file FILE (sweeps/*.toml: data, split and every run by name) into $DIR
# with `python -m drift sweep`; `grid_point FILE NAME KEY=VALUE...` runs one more run with FILE's
# shared options (a point the grid's rule adds). `point NAME EDITOR EVAL-OPTIONS...` runs one
# `python -m drift eval` run unless NAME.json exists. A run that fails stops the script with its
# status; re-running the script resumes every unfinished run at its next case. After a grid,
# `widen FILE PREFIX` adds the rule's next γ (PREFIX_gG_sSTEPS) while its choice sits at the grid's edge.
#
# A pinned package whose sweep cannot read the file (one from before sweep files took a split,
# `shard`: the grids started by shell loops) runs FILE's runs one by one with `eval` instead, each
# skipped when NAME.json exists and resumed from NAME.json.partial.jsonl, as those grids always ran.

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
    local lock="${LOCK-$DIR/.runs.lock}"
    if [[ -n "$lock" ]]; then
        exec 9>"$lock"
        if ! flock -n 9; then
            echo "$(date -u +%FT%TZ) another runner holds $lock; not starting a second"
            exit 1
        fi
    fi
    echo "$(date -u +%FT%TZ) $(basename "$script") (pid $$, DRIFT_THREADS=$DRIFT_THREADS, nice $(nice)) on $(hostname)"
}

snapshot() {  # the pinned commit's drift package, extracted once (git archive) into out/grid-src
    local commit src tmp
    if [[ ! -s "$PIN" ]]; then  # a new experiment runs HEAD, and keeps to it
        git -C "$ROOT" rev-parse HEAD >"$PIN"
    fi
    commit="$(tr -d '[:space:]' <"$PIN")"
    src="$ROOT/out/grid-src/$commit"
    if [[ ! -f "$src/drift/__init__.py" ]]; then  # extracted apart, so two runners starting at once both work
        tmp="$src.tmp.$$"
        rm -rf "$tmp" && mkdir -p "$tmp"
        git -C "$ROOT" archive "$commit" drift | tar -x -C "$tmp"
        if [[ -f "$src/drift/__init__.py" ]]; then rm -rf "$tmp"; else rm -rf "$src" && mv "$tmp" "$src"; fi
    fi
    SRC="$src"
    COMMIT="$commit"
    export DRIFT_SOURCE_COMMIT="$commit"  # the runs' provenance names it (drift.cli.spec.provenance)
}

point() {  # NAME EDITOR EVAL-OPTIONS...: one eval run on $DATA's $SPLIT, skipped when finished
    local name="$1" editor="$2"
    shift 2
    run_eval "$name" --data "$DATA" "${SPLIT[@]}" --editor "$editor" --no-fluency "$@"
}

run_eval() {  # NAME EVAL-OPTIONS...: one `python -m drift eval` run into $DIR/NAME.json, skipped when finished
    local name="$1" out="$DIR/$1.json" rc done
    shift
    if [[ -f "$out" ]]; then
        return 0
    fi
    # one runner a run: its own lock, held while it runs, and the lock eval holds on the run's log
    # (a runner started before these locks); a run another runner holds is left to it
    exec 7>"$DIR/.$name.lock"
    if ! flock -n 7 || ! flock -n "$out.partial.jsonl.lock" true; then
        exec 7>&-
        echo "$(date -u +%FT%TZ) $name is another runner's; next"
        return 0
    fi
    snapshot
    done=0
    if [[ -f "$out.partial.jsonl" ]]; then
        done=$(($(wc -l <"$out.partial.jsonl") - 1))
    fi
    echo "$(date -u +%FT%TZ) start $name ($done cases logged before) at commit $COMMIT: $*"
    rc=0
    (cd "$SRC" && "$PY" -m drift eval "$@" --quiet --out "$out") || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "$(date -u +%FT%TZ) stop: $name exited with status $rc; re-run the script to resume"
        exit "$rc"
    fi
    echo "$(date -u +%FT%TZ) done $name"
    exec 7>&-
}

resolved() {  # FILE: a copy of FILE whose data path starts at / (the runs start in the pinned package):
    # a path relative to the repository made absolute, "builtin" kept, and D (when set) in its place
    local copy value
    copy="$ROOT/out/sweeps/$(basename "$DIR")-$(basename "$1")"
    mkdir -p "$(dirname "$copy")"
    value="$(sed -n 's/^data = "\(.*\)"$/\1/p' "$1" | head -n 1)"
    case "$value" in
        builtin | /* | "") ;;
        *) value="$(realpath -m "$ROOT/$value")" ;;
    esac
    [[ -z "${D:-}" ]] || value="$DATA"
    sed "s|^data = .*|data = \"$value\"|" "$1" >"$copy"
    echo "$copy"
}

grid() {  # FILE: every run of the sweep file FILE into $DIR, resumable
    local file rc=0 why
    file="$(resolved "$1")"
    snapshot
    # the pinned package sweeps FILE only if it reads the file and its sweep takes --out-dir
    if why="$(cd "$SRC" && "$PY" -c 'import sys; from drift.cli.sweep import load; load(sys.argv[1])' "$file" 2>&1)" &&
        why="its sweep command has no --out-dir" &&
        (cd "$SRC" && "$PY" -m drift sweep --help 2>/dev/null | grep -q -- '--out-dir'); then
        exec 6>"$DIR/.sweep.lock"  # one sweep a folder, whatever LOCK allows
        if ! flock -n 6; then
            echo "$(date -u +%FT%TZ) another runner sweeps $DIR; this one leaves it"
            return 0
        fi
        echo "$(date -u +%FT%TZ) start sweep $1 at commit $COMMIT"
        (cd "$SRC" && "$PY" -m drift sweep "$file" --out-dir "$DIR" --engine local --quiet) || rc=$?
        if [[ $rc -ne 0 ]]; then
            echo "$(date -u +%FT%TZ) stop: the sweep exited with status $rc; re-run the script to resume"
            exit "$rc"
        fi
        echo "$(date -u +%FT%TZ) done sweep $1"
        return 0
    fi
    echo "$(date -u +%FT%TZ) the package of $COMMIT cannot sweep $1 (${why##*$'\n'}): its runs one by one with eval"
    local listing line
    if ! listing="$(cd "$ROOT" && PYTHONPATH="$ROOT" "$PY" -c '
import shlex, sys
from drift.cli.sweep import load
for run in load(sys.argv[1])[0]:  # each run as the eval options it stands for
    argv = []
    for key, value in run.options.items():
        if key == "hp":
            argv += [a for k, v in value.items() for a in ("--hp", f"{k}={v}")]
        elif value is True:
            argv.append("--" + key.replace("_", "-"))
        elif value is not False and value is not None:
            argv += ["--" + key.replace("_", "-"), str(value)]
    print(shlex.join([run.name, *argv]))
' "$file")"; then
        echo "$(date -u +%FT%TZ) stop: $1 cannot be read as a sweep file; fix it and re-run the script"
        exit 1
    fi
    while IFS= read -r line; do
        [[ -z "$line" ]] || eval "run_eval $line"  # shlex-quoted: NAME then eval's options
    done <<<"$listing"
}

grid_point() {  # FILE NAME KEY=VALUE...: one run more with FILE's shared options (TOML values)
    local file="$1" name="$2" extra
    shift 2
    extra="$ROOT/out/sweeps/point-$name.toml"
    mkdir -p "$(dirname "$extra")"
    { sed '/^\[\[run\]\]/,$d' "$file"; echo "[[run]]"; echo "name = \"$name\""; printf '%s\n' "$@"; } >"$extra"
    grid "$extra"
}

widen() {  # FILE PREFIX: after FILE's grid, one run more at the next γ (× 2) while the rule's choice is
    # the largest γ of its row (analyses/tables.py --widen names it), each run PREFIX_gG_sSTEPS
    local file="$1" prefix="$2" next steps g
    while true; do
        if ! next="$(cd "$ROOT" && "$PY" analyses/tables.py --results "$DIR" --widen)"; then
            echo "$(date -u +%FT%TZ) stop: analyses/tables.py --widen failed; fix it and re-run the script"
            exit 1
        fi
        [[ -n "$next" ]] || return 0
        read -r steps g <<<"$next"
        [[ ! -f "$DIR/${prefix}_g${g}_s${steps}.json" ]] || return 0  # already run: nothing left to widen
        grid_point "$file" "${prefix}_g${g}_s${steps}" "sadr = $g" "steps = $steps"
    done
}
