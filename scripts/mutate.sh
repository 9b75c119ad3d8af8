#!/usr/bin/env bash
# Mutation testing of the ledger computations (docs/fidelity.md, "Mutation testing").
#
#   scripts/mutate.sh                 # the ledger functions listed below (~1 h on 2 shared CPUs)
#   scripts/mutate.sh 'drift.editors.rome.*'   # or any mutmut name patterns
#   .venv/bin/mutmut results          # survivors afterwards; `mutmut show NAME` prints a diff
#
# mutmut (pip install mutmut, 3.x) copies drift/ and tests/ into mutants/ (git-ignored), mutates
# the files named in pyproject.toml's [tool.mutmut], and runs, for each mutant, the fast tests
# (-m "not slow") that reach the mutated function. Not run by CI. Niced, one worker and one torch
# thread: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."
MUTMUT=${MUTMUT:-.venv/bin/mutmut}
CHILDREN=${CHILDREN:-1}
# the functions that compute what a ledger row names (drift.editors.X.x_F / xǁClassǁmethod)
LEDGER=(
  'drift.editors.rome.x_rank_one_delta__*'
  'drift.editors.rome.x__rome_edit__*'
  'drift.editors.objectives.xǁNLLǁ*'
  'drift.editors.objectives.xǁEssenceKLǁ*'
  'drift.editors.objectives.xǁWeightDecayǁ*'
  'drift.editors.objectives.x_default_terms__*'
  'drift.editors.spread.*'
  'drift.editors.pmet.x_compute_pmet_many__*'
  'drift.editors.adaple.x_erase_old_delta__*'
  'drift.editors.adaple.x_residual_delta__*'
  'drift.editors.adaple.x__adaple_solve__*'
  'drift.editors.sadr.xǁSADRǁhooks__*'
  'drift.editors.sadr.xǁSADRǁ__call____*'
  'drift.editors.target.x__stops__*'
)
if [ "$#" -gt 0 ]; then PATTERNS=("$@"); else PATTERNS=("${LEDGER[@]}"); fi
export DRIFT_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
nice -n 5 "$MUTMUT" run --max-children "$CHILDREN" "${PATTERNS[@]}"
"$MUTMUT" results
