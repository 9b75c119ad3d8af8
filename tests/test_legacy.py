"""drift's adapter on the legacy kind: TransformerLens 3.x ``HookedTransformer``.

TL 3 and TL 4 cannot share a venv, so the checks live in ``tests/legacy_check.py`` (not collected
here: its name does not match ``test_*.py``) and run in ``.venv-legacy``, which
``bash scripts/setup-legacy.sh`` builds. Without that venv the test is skipped with that reason;
``scripts/test.sh`` builds it and sets ``DRIFT_REQUIRE_LEGACY=1``, so there its absence fails.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEGACY_PYTHON = ROOT / ".venv-legacy" / "bin" / "python"
CHECK = "tests/legacy_check.py"


@pytest.mark.integration
def test_adapter_on_legacy_hooked_transformer():
    if not LEGACY_PYTHON.exists():
        why = (
            f"{LEGACY_PYTHON.relative_to(ROOT)} not found: `bash scripts/setup-legacy.sh` builds the "
            "TransformerLens 3.x venv this test runs in"
        )
        if os.environ.get("DRIFT_REQUIRE_LEGACY") == "1":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)  # the main venv's paths must not leak into the legacy interpreter
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    cmd = [
        str(LEGACY_PYTHON),
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--noconftest",  # a conftest for the main venv may import what TL 3's venv lacks
        CHECK,
    ]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"{' '.join(cmd)} timed out after {e.timeout} s\n{e.stdout or ''}\n{e.stderr or ''}",
            pytrace=False,
        )
    if proc.returncode != 0:
        pytest.fail(
            f"legacy checks failed (exit {proc.returncode}) running `{' '.join(cmd)}` in {ROOT}; "
            "if .venv-legacy is stale, rerun `bash scripts/setup-legacy.sh`\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
