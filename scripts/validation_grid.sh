#!/usr/bin/env bash
# The validation grid of docs/results.md ("Protocol for a new model"): ROME alone and ROME+SADR
# on the validation split (--limit 1178 --shard 29/50 of the dev set: 24 cases, none of them a
# test case), one `python -m drift eval` run per point, into results/validation/NAME.json.
#
#   setsid nohup bash scripts/validation_grid.sh >/dev/null 2>&1 &     # in the background
#   .venv/bin/python analyses/tables.py                                  # progress and the table
#
# Re-running the script resumes: a point whose results file exists is skipped, an unfinished
# point resumes from its log (NAME.json.partial.jsonl: the configuration in its header, one line
# per finished case), the others start in the order below (the most informative first). When the
# fixed grid is done, the rule's choice is widened upward in γ while it sits at the grid's edge
# (analyses/tables.py --widen). Everything the script prints goes to results/validation/grid.log.
#
# Every point runs one version of drift: the commit in results/validation/grid.commit (written
# with HEAD when the grid starts), its drift/ package extracted to out/grid-src/COMMIT, so edits
# in the working tree or later commits never mix into the grid. Moving the grid to another commit
# is a new grid: set results/validation aside and start again. The log names each point's commit.
# Environment: D (the dev set; its absolute path is part of each run's configuration),
# DRIFT_THREADS (default 1), NICE (default 10).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="$ROOT/results/validation"
LOG="$DIR/grid.log"
DATA="$(realpath "${D:-$ROOT/../shared/data/counterfact-merged-dev.json}")"
SPLIT=(--limit 1178 --shard 29/50)
PY="$ROOT/.venv/bin/python"
export DRIFT_THREADS="${DRIFT_THREADS:-1}"
export TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1  # no progress bars in the log
NICE="${NICE:-10}"
if [[ "$(nice)" -lt "$NICE" ]]; then  # the grid yields the CPU to anything else
    exec nice -n "$((NICE - $(nice)))" bash "${BASH_SOURCE[0]}" "$@"
fi
mkdir -p "$DIR"
exec >>"$LOG" 2>&1
exec 9>"$DIR/.grid.lock"
if ! flock -n 9; then
    echo "$(date -u +%FT%TZ) another validation_grid.sh holds $DIR/.grid.lock; not starting a second"
    exit 1
fi

snapshot() {  # the pinned commit's drift package, extracted once (git archive)
    local commit src
    if [[ ! -s "$DIR/grid.commit" ]]; then  # a new grid runs HEAD, and keeps to it
        git -C "$ROOT" rev-parse HEAD >"$DIR/grid.commit"
    fi
    commit="$(tr -d '[:space:]' <"$DIR/grid.commit")"
    src="$ROOT/out/grid-src/$commit"
    if [[ ! -f "$src/drift/__init__.py" ]]; then
        rm -rf "$src.tmp" && mkdir -p "$src.tmp"
        git -C "$ROOT" archive "$commit" drift | tar -x -C "$src.tmp"
        rm -rf "$src" && mv "$src.tmp" "$src"
    fi
    SRC="$src"
    COMMIT="$commit"
}

point() {  # NAME EVAL-OPTIONS...: one point of the grid, skipped when finished
    local name="$1" out="$DIR/$1.json" rc done
    shift
    if [[ -f "$out" ]]; then
        return 0
    fi
    snapshot
    done=0
    if [[ -f "$out.partial.jsonl" ]]; then
        done=$(($(wc -l <"$out.partial.jsonl") - 1))
    fi
    echo "$(date -u +%FT%TZ) start $name ($done cases logged before) at commit $COMMIT: rome $*"
    rc=0
    (cd "$SRC" && "$PY" -m drift eval --data "$DATA" "${SPLIT[@]}" --editor rome --no-fluency --quiet \
        "$@" --out "$out") || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "$(date -u +%FT%TZ) stop: $name exited with status $rc; re-run the script to resume"
        exit "$rc"
    fi
    echo "$(date -u +%FT%TZ) done $name"
}

echo "$(date -u +%FT%TZ) validation grid (pid $$, DRIFT_THREADS=$DRIFT_THREADS, nice $(nice)) on $(hostname)"
# 1. the reference of the selection rule, then the paper's GPT-J setting and Llama-3-8B's γ
point rome_s20
point rome_sadr_g0.01_s80 --sadr 0.01 --steps 80
point rome_sadr_g0.04_s80 --sadr 0.04 --steps 80
# 2. ROME alone at 80 steps: what the extra steps do without SADR
point rome_s80 --steps 80
# 3. SADR at ROME's own 20 steps (cheap: as fast as ROME)
for g in 0.01 0.04 0.08 0.005; do point "rome_sadr_g${g}_s20" --sadr "$g" --steps 20; done
# 4. the rest of the 80-step row, then the 40-step row with its control
for g in 0.08 0.005; do point "rome_sadr_g${g}_s80" --sadr "$g" --steps 80; done
point rome_s40 --steps 40
for g in 0.01 0.04 0.08 0.005; do point "rome_sadr_g${g}_s40" --sadr "$g" --steps 40; done
# 5. Fig. 7: ROME's own knobs at its 20 steps (learning rate 0.5 and ω 0.0625 are rome_s20)
point rome_lr0.05_s20 --hp lr=0.05
point rome_lr0.2_s20 --hp lr=0.2
point rome_kl1_s20 --hp kl_factor=1.0
point rome_kl4_s20 --hp kl_factor=4.0
# 6. widened upward: while the rule's choice is the largest γ of its row, the next γ (× 2)
while true; do
    if ! widen="$(cd "$ROOT" && "$PY" analyses/tables.py --results "$DIR" --widen)"; then
        echo "$(date -u +%FT%TZ) stop: analyses/tables.py --widen failed; fix it and re-run the script"
        exit 1
    fi
    [[ -n "$widen" ]] || break
    read -r steps g <<<"$widen"
    [[ -f "$DIR/rome_sadr_g${g}_s${steps}.json" ]] && break  # already run: nothing left to widen
    point "rome_sadr_g${g}_s${steps}" --sadr "$g" --steps "$steps"
done
echo "$(date -u +%FT%TZ) validation grid finished"
(cd "$ROOT" && "$PY" analyses/tables.py --results "$DIR") || true
