"""analyses/stats_choice.py --report: its tables from the committed results, on any machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import run_analysis

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "stats_choice"


def test_report_prints_the_committed_tables_without_the_variants_cached_statistics(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "stats_choice"
    shutil.copytree(COMMITTED, out, ignore=shutil.ignore_patterns("deltas", "*.log"))
    before = (out / "comparison.json").read_text()
    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path / "empty-cache"))  # a fresh machine
    stdout, stderr = run_analysis("stats_choice", ["--report", "--out-dir", out], capsys)
    assert "| C of | ‖C − C_ref‖/‖C_ref‖" in stdout and "| sampled | 0.889 |" in stdout
    assert "comparison.json kept as it is" in stderr
    assert (out / "comparison.json").read_text() == before
    config = json.loads(before)["config"]  # what the comparison compares, and what computed it
    assert config["from"][0] == "novels.json" and "commit" in config["provenance"]
