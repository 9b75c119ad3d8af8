#!/usr/bin/env bash
# Run-to-run variation of Table 3 (docs/results.md, "A second draw of the context prefixes"): ROME
# alone (preset) and the validation grid's choice, ROME+SADR γ 4e-2 at 20 steps, on the same 59 test
# cases (--limit 1178 --shard 20/20 of the dev set) with a second draw of ROME's generated context
# prefixes (`--hp prefix_seed=1`; Table 3's rows use draw 0), one `python -m drift eval` run per
# point, into results/seed/NAME.json. ROME first, then ROME+SADR.
#
#   setsid nohup bash scripts/seed_runs.sh >/dev/null 2>&1 &      # in the background; resumes
#   .venv/bin/python analyses/tables.py --seeds                     # the rows beside Table 3's
#
# Re-running the script resumes: a finished point (NAME.json) is skipped, an unfinished one resumes
# from its log (NAME.json.partial.jsonl: the configuration in its header, one line per finished
# case). Every point runs the drift package of the commit in results/seed/seed.commit (written with
# HEAD when the runs start; extracted to out/grid-src/COMMIT), so later commits never mix into one
# run. Everything the script prints goes to results/seed/runs.log.
# Environment: D (the dev set), DRIFT_THREADS (default 1), NICE (default 10).
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/results/seed"
LOG="$DIR/runs.log"
PIN="$DIR/seed.commit"
SPLIT=(--limit 1178 --shard 20/20)
# shellcheck source=scripts/eval_points.sh
source "$(dirname "${BASH_SOURCE[0]}")/eval_points.sh"
points_begin "${BASH_SOURCE[0]}" "$@"

point rome_s20_p1 rome --hp prefix_seed=1
point rome_sadr_g0.04_s20_p1 rome --sadr 0.04 --steps 20 --hp prefix_seed=1
echo "$(date -u +%FT%TZ) seed runs finished"
