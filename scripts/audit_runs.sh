#!/usr/bin/env bash
# The audit behind README's "AUROC 0.67" (docs/results.md, "Auditing an edit before it ships"): ROME
# on the last 207 dev cases (--limit 1178 --shard 34/40 ... 40/40), audited and validated, one
# `python -m drift audit` run per shard into results/audit/aI.json, then merged into
# results/audit/audit.json. About 0.5-1 min a case on one core here (1-3 min with other jobs beside it).
#
#   setsid nohup bash scripts/audit_runs.sh >/dev/null 2>&1 &     # in the background; resumes
#
# A finished shard is skipped; an unfinished one resumes case by case (its log aI.json.partial.jsonl).
# Each shard has its own lock (results/audit/.aI.lock), so a second runner started beside the first
# takes the next free shard: on two cores, start the line above twice (DRIFT_THREADS=1 each). The
# runner that finds all seven shards finished merges them.
# Every shard runs the drift package of the commit in results/audit/audit.commit (HEAD when first
# started), extracted to out/grid-src/COMMIT. Everything printed goes to results/audit/runs.log.
# Environment: D (the dev set), DRIFT_THREADS (default 1), NICE (default 10).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/results/audit"
LOG="$DIR/runs.log"
PIN="$DIR/audit.commit"
LOCK=""  # no lock on the folder: each shard takes its own below
# shellcheck source=scripts/eval_points.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_points.sh"
points_begin "${BASH_SOURCE[0]}" "$@"
snapshot
SHARDS=(34 35 36 37 38 39 40)
for i in "${SHARDS[@]}"; do
    [[ -f "$DIR/a$i.json" ]] && continue
    exec 8>"$DIR/.a$i.lock"
    if ! flock -n 8; then  # another runner has this shard
        exec 8>&-
        continue
    fi
    echo "$(date -u +%FT%TZ) start audit shard $i/40 at commit $COMMIT"
    (cd "$SRC" && "$PY" -m drift audit --data "$DATA" --limit 1178 --shard "$i/40" --editor rome --validate \
        --quiet --out "$DIR/a$i.json") || { echo "$(date -u +%FT%TZ) stop: shard $i failed; re-run to resume"; exit 1; }
    echo "$(date -u +%FT%TZ) done audit shard $i/40"
    exec 8>&-
done
for i in "${SHARDS[@]}"; do
    if [[ ! -f "$DIR/a$i.json" ]]; then
        echo "$(date -u +%FT%TZ) this runner is done; shard $i is another runner's (or failed: re-run to resume)"
        exit 0
    fi
done
# shards 34-40 of 40 (the last 207 cases, by design), named from their folder: the merged file
# records them as a34.json ..., not by the machine's absolute paths
[[ -f "$DIR/audit.json" ]] ||
    (cd "$DIR" && PYTHONPATH="$SRC" "$PY" -m drift merge a3[4-9].json a40.json --allow-missing --out audit.json)
echo "$(date -u +%FT%TZ) audit finished: $DIR/audit.json"
