#!/usr/bin/env bash
# GPT-J-6B's full shape (28 layers, random weights) edited on one GPU: seconds and peak GPU memory
# of one ROME edit in bf16 (and in fp32, and of one MEMIT edit in bf16), each run alone, printed
# as benchmarks/bench.py width prints them. Results go in BENCHMARKS.md ("Memory at real widths").
#
# On a device machine (see ../shared/device/README.md), after `bash ../shared/device/bundle.sh`
# here, one call that carries [".whl", ".m1"]:
#   bash .m1/setup-1.sh && PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 bash scripts/gpu_bench.sh
# No model package or data is needed: the weights are random, the key statistics are the model's
# own sampled text (its corpus package is not on the device). About 5 minutes on an H200.
#
# Batched editing (`benchmarks/bench.py batch`, ROME target vectors optimised several cases per
# pass) needs the default model: after call 2 of the device recipe (`source .m2/setup-2.sh`),
#   python benchmarks/bench.py batch --cases 32 --chunk 8
# (not run here: it needs the model package, which travels in the recipe's second call).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

# 20 passes: the reference's ROME steps, none skipped (early stop off). Key statistics from
# 32 texts of 512 tokens (16k tokens), timed and extrapolated to drift's 102,200.
run() { timeout 300 "$PY" benchmarks/bench.py width --device cuda --layers 28 --stats-texts 32 --stats-tokens 512 "$@"; }
run --editor rome --steps 20 --dtype bf16
run --editor rome --steps 20 --dtype fp32
run --editor memit --steps 20 --dtype bf16
