#!/usr/bin/env bash
# The audit behind README's "AUROC 0.67" (docs/results.md, "Auditing an edit before it ships"): ROME
# on the last 207 dev cases (--limit 1178 --shard 34/40 ... 40/40), audited and validated, one
# `python -m drift audit` run per shard into results/audit/aI.json, then merged into
# results/audit/audit.json. Not started yet: 1-3 min a case on one core, 4-10 hours in all.
#
#   setsid nohup bash scripts/audit_runs.sh >/dev/null 2>&1 &     # in the background; resumes
#
# A finished shard is skipped; an unfinished one resumes case by case (its log aI.json.partial.jsonl).
# Every shard runs the drift package of the commit in results/audit/audit.commit (HEAD when first
# started), extracted to out/grid-src/COMMIT. Everything printed goes to results/audit/runs.log.
# Environment: D (the dev set), DRIFT_THREADS (default 1), NICE (default 10).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/results/audit"
LOG="$DIR/runs.log"
PIN="$DIR/audit.commit"
# shellcheck source=scripts/eval_points.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_points.sh"
points_begin "${BASH_SOURCE[0]}" "$@"
snapshot
for i in 34 35 36 37 38 39 40; do
    [[ -f "$DIR/a$i.json" ]] && continue
    echo "$(date -u +%FT%TZ) start audit shard $i/40 at commit $COMMIT"
    (cd "$SRC" && "$PY" -m drift audit --data "$DATA" --limit 1178 --shard "$i/40" --editor rome --validate \
        --quiet --out "$DIR/a$i.json") || { echo "$(date -u +%FT%TZ) stop: shard $i failed; re-run to resume"; exit 1; }
    echo "$(date -u +%FT%TZ) done audit shard $i/40"
done
(cd "$SRC" && "$PY" -m drift merge "$DIR"/a3[4-9].json "$DIR/a40.json" --out "$DIR/audit.json")
echo "$(date -u +%FT%TZ) audit finished: $DIR/audit.json"
