"""analyses/tables.py: the validation grid's table and selection rule, on synthetic results files."""

from __future__ import annotations

from pathlib import Path

import pytest

from drift.cli.runs import RecordLog, write_results
from drift.cli.spec import digest_of
from tests.conftest import load_analysis

tables = load_analysis("tables")
IDS = ["0", "1", "2", "3"]
BASE = {
    "data": "builtin",
    "data_sha256": digest_of("builtin"),
    "editor": "rome",
    "model": "smollm2-135m",
    "limit": 4,
    "scoring": "mean",
    "pool": "prompts",
}


def rows(es=100.0, ps=100.0, ns=50.0, rs=50.0, dns=50.0, ids=IDS) -> list[dict]:
    """Every case with the same scores, one prompt per task."""
    m = {"ES": es, "PS": ps, "NS": ns, "RS": rs, "DNS": dns}
    return [{"case_id": i, "metrics": m | {f"{k}_k": 1 for k in m}} for i in ids]


def finished(folder: Path, name: str, config: dict, case_rows: list[dict]) -> None:
    write_results(folder / f"{name}.json", BASE | config, case_rows, "prompts")


def sadr(gamma: float, steps: int) -> dict:
    return {"sadr": gamma, "sadr_heads": "selective", "steps": steps}


def test_partial_points_show_their_count_and_the_rule_waits(tmp_path):
    with RecordLog(tmp_path / "rome_s20.json.partial.jsonl", BASE) as log:
        for row in rows(ids=IDS[:2]):
            log.append(row)
    points = tables.load_points(tmp_path)
    assert [(p.name, len(p.cases), p.finished, p.expected) for p in points] == [("rome_s20", 2, False, 4)]
    text = tables.grid_table(points)
    assert "| 2 of 4 (running) |" in text and "waits for ROME alone" in text
    assert tables.widen(points) is None


def test_the_rule_takes_the_most_specific_point_within_two_points_of_rome(tmp_path):
    finished(tmp_path, "rome_s20", {}, rows(ns=40, rs=10, dns=20))
    finished(tmp_path, "rome_s80", {"steps": 80}, rows(ns=40, rs=60, dns=60))  # not a candidate
    finished(tmp_path, "a", sadr(0.01, 80), rows(ps=100, ns=40, rs=20, dns=30))
    finished(tmp_path, "b", sadr(0.04, 80), rows(ps=75, ns=40, rs=50, dns=50))  # PS 25 points down
    finished(tmp_path, "c", sadr(0.005, 20), rows(es=100, ns=40, rs=20, dns=30))  # ties a: fewer steps
    finished(tmp_path, "d", sadr(0.08, 20), rows(rs=100, ids=["0", "1", "2", "9"]))  # other cases
    finished(tmp_path, "f", sadr(0.04, 20), rows(rs=100, ids=IDS[:3]))  # a merge lacking a case
    with RecordLog(tmp_path / "e.json.partial.jsonl", BASE | sadr(0.08, 40)) as log:
        log.append(rows(rs=100, dns=100)[0])  # unfinished: never chosen
    points = tables.load_points(tmp_path)
    chosen, ref, why = tables.select(points)
    assert ref.name == "rome_s20" and chosen.name == "c"
    assert why == {"a": "ok", "b": "PS -25.0", "c": "ok", "d": "other cases than ROME's"}
    text = tables.grid_table(points)
    assert "| **ROME+SADR γ=0.005** | 20 | 4 |" in text and "| 1 of 4 (running) |" in text
    assert "| 3 of 4 (incomplete) |" in text
    assert "| 1 of 4 (running) | 100.0 | 100.0 | 50.0 | 100.0 | 100.0 | 83.3 | 23.3 | unfinished |" in text
    assert "provisionally" in text
    paired = tables.paired_table(points)
    assert "ROME (preset), 20 steps" in paired.splitlines()[2]


@pytest.mark.parametrize(("best", "expected"), [(0.08, (80, 0.16)), (0.04, None)])
def test_the_grid_widens_upward_while_the_choice_is_at_its_edge(tmp_path, best, expected):
    finished(tmp_path, "rome_s20", {}, rows(ns=10, rs=10, dns=10))
    for steps in tables.GRID_STEPS:
        for g in tables.GRID_GAMMAS:
            good = steps == 80 and g == best
            finished(tmp_path, f"g{g}_s{steps}", sadr(g, steps), rows(rs=90 if good else 20))
    points = tables.load_points(tmp_path)
    assert tables.widen(points) == expected
    assert "provisionally" not in tables.grid_table(points)
    # the choice is final only once no widening point is pending
    assert (tables.final_choice(points) is None) == bool(expected)
    if expected:  # the widened point is worse: the choice is no longer at the edge
        finished(tmp_path, "g0.16_s80", sadr(0.16, 80), rows(rs=30))
        assert tables.widen(tables.load_points(tmp_path)) is None
    chosen = tables.final_choice(tables.load_points(tmp_path))
    assert (chosen.steps, chosen.gamma) == (80, best)


def test_no_final_choice_while_the_grid_runs(tmp_path, capsys):
    finished(tmp_path, "rome_s20", {}, rows(ns=10, rs=10, dns=10))
    finished(tmp_path, "g0.01_s20", sadr(0.01, 20), rows(rs=90))  # the best so far, grid unfinished
    assert tables.select(tables.load_points(tmp_path))[0].name == "g0.01_s20"
    assert tables.final_choice(tables.load_points(tmp_path)) is None
    assert tables.main(["--results", str(tmp_path), "--chosen"]) == 0
    assert capsys.readouterr().out == ""


def test_update_rewrites_only_the_marked_block(tmp_path):
    (tmp_path / "v").mkdir()
    finished(tmp_path / "v", "rome_s20", {}, rows())
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{tables.MARKER}\nold\n{tables.END_MARKER}\nafter\n")
    assert tables.main(["--results", str(tmp_path / "v"), "--update", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "| ROME (preset) | 20 | 4 | 100.0 |" in text
    # MEMIT's grid goes into its own block, never ROME's
    memit = tmp_path / "m"
    finished(memit, "memit_s20", {"editor": "memit"}, rows())
    finished(memit, "memit_sadr_g0.04_s20", {"editor": "memit"} | sadr(0.04, 20), rows())
    start, end = tables.grid_markers("memit")
    doc.write_text(f"{text}{start}\nold\n{end}\n")
    assert tables.main(["--results", str(memit), "--update", str(doc)]) == 0
    rome_block, memit_block = doc.read_text().split(start)
    assert rome_block == text and "old" not in memit_block and "| MEMIT |" in memit_block


def test_table3_pairs_each_run_with_its_editor_alone(tmp_path):
    finished(tmp_path, "rome_s20", {}, rows(rs=20))
    finished(tmp_path, "rome_sadr", sadr(0.01, 80), rows(rs=60))
    finished(tmp_path, "memit_sadr", {"editor": "memit"} | sadr(0.005, 20), rows(dns=80))
    finished(tmp_path, "memit", {"editor": "memit"}, rows(dns=50))
    text = tables.test_table(tables.load_points(tmp_path))
    rome, memit = text.split("**MEMIT**")
    same = "+0.0 (p n/a; 0/0)"
    assert f"ROME+SADR γ=0.01, 80 steps [4] | {same} | {same} | {same} | +40.0 (p n/a; 4/0) |" in rome
    # MEMIT's rows are paired against MEMIT alone, whatever order the files come in
    assert "minus MEMIT (preset), 20 steps [4]" not in memit  # "(preset)" names ROME's reference only
    assert "minus MEMIT, 20 steps [4]" in memit and "MEMIT+SADR γ=0.005, 20 steps [4]" in memit
    assert "| +30.0 (p n/a; 4/0) |" in memit


def _sequential_run(folder: Path, key: str, editor: str, dr: float, marks: list, es: list) -> None:
    from drift.cli.runs import append_record

    label = editor.upper() + (f" +DR(p={dr:g})" if dr else "")
    checkpoints = [
        {"n_edits": n, "summary": {"ES": e, "EM": e / 2, "PS": 50.0, "PM": 10.0, "NS": 80.0, "NM": 3.0}}
        for n, e in zip(marks, es)
    ]
    record = {"key": key, "label": label, "config": {"editor": editor, "dr": dr}, "seconds": 120.0}
    append_record(folder / "sequential-runs.jsonl", record | {"checkpoints": checkpoints})


def test_the_sequential_table_reads_every_parts_runs_curves_first_then_the_sweep(tmp_path, capsys):
    for part in ("p1", "p4", "p5"):
        (tmp_path / part).mkdir()
    marks = [1, 10, 25, 50, 100]
    _sequential_run(tmp_path / "p4", "b", "adaple", 0.8, marks, [100.0, 90.0, 80.0, 70.0, 60.0])
    _sequential_run(tmp_path / "p1", "a", "memit", 0.0, marks, [100.0, 95.0, 85.0, 75.0, 65.0])
    _sequential_run(tmp_path / "p5", "c", "adaple", 0.5, [10], [40.0])
    assert tables.main(["--results", str(tmp_path), "--sequential"]) == 0
    out = capsys.readouterr().out.splitlines()
    head = " | ".join(f"ES / EM after {n}" for n in (10, 25, 50, 100))
    assert out[0] == f"| run | {head} | PS / NS at the last | minutes |"
    memit = "| MEMIT | 95.0 / 47.5 | 85.0 / 42.5 | 75.0 / 37.5 | 65.0 / 32.5 | 50.0 / 80.0 (100) | 2 |"
    assert out[2] == memit
    assert out[3].startswith("| ADAPLE +DR(p=0.8) | 90.0 / 45.0 |")
    assert "| 0.5 | 40.0 / 20.0 | 50.0 / 10.0 | 80.0 / 3.0 |" in out


def test_table3_corrects_every_paired_test_as_one_family(tmp_path):
    """Holm's adjusted p beside each raw p, over all of Table 3's tests with a p, and BH's q."""
    import math

    from scipy import stats

    ids = [str(i) for i in range(8)]
    base = [
        {"case_id": i, "metrics": {"ES": 100.0, "EM": 50.0 + k, "RS": 10.0 * (k % 3)}}
        for k, i in enumerate(ids)
    ]
    moved = [  # EM up by 10 ± a little on every case; RS noise
        {"case_id": i, "metrics": {"ES": 100.0, "EM": 60.0 + k + 0.5 * (k % 2), "RS": 10.0 * ((k + 1) % 3)}}
        for k, i in enumerate(ids)
    ]
    for r in base + moved:  # PS, NS and DNS alike in both runs: no spread, no p
        r["metrics"] |= {"PS": 50.0, "NS": 50.0, "DNS": 50.0}
        r["metrics"] |= {f"{m}_k": 1 for m in list(r["metrics"])}
    write_results(tmp_path / "rome.json", BASE | {"limit": 8}, base, "prompts")
    write_results(tmp_path / "rome_sadr.json", BASE | {"limit": 8} | sadr(0.04, 20), moved, "prompts")
    text = tables.test_table(tables.load_points(tmp_path))
    assert "Corrected for multiple comparisons" in text
    em = stats.ttest_rel([60.0 + k + 0.5 * (k % 2) for k in range(8)], [50.0 + k for k in range(8)]).pvalue
    rs = stats.ttest_rel([10.0 * ((k + 1) % 3) for k in range(8)], [10.0 * (k % 3) for k in range(8)]).pvalue
    assert em < rs and not math.isnan(rs)
    # two tests with a p (ES has no spread): Holm multiplies the smaller by 2, the larger by 1
    row = next(
        line
        for line in text.splitlines()
        if line.startswith("| ROME+SADR γ=0.04, 20 steps [8] |") and "→" in line
    )
    assert f"**{em:.2g} → {min(1, 2 * em):.2g} /" in row
    assert f"{rs:.2g} → {max(min(1, rs), min(1, 2 * em)):.2g} /" in row
    assert "1 of 2 differences keep Holm's p < 0.05: ROME+SADR γ=0.04, 20 steps [8]: EM +10.2." in text
    assert tables.holm([0.2, 0.01, float("nan"), 0.04])[:2] == [0.2, 0.03] and math.isnan(
        tables.holm([math.nan])[0]
    )


def test_the_papers_numbers_stand_beside_drifts_with_relative_changes(tmp_path):
    finished(tmp_path, "rome_s20", {}, rows(rs=20.0, dns=40.0))
    finished(tmp_path, "rome_sadr_g0.04_s20", sadr(0.04, 20), rows(rs=30.0, dns=50.0))
    text = tables.paper_table(tables.load_points(tmp_path))
    gptj, table10, ours = text.splitlines()[2:5]
    assert "11.9 → 27.8 (+132.4%)" in gptj and "30.4 → 49.4 (+62.2%)" in gptj  # Table 3: 11.94, 27.75, ...
    assert "13.2 → 34.1 (+159.1%)" in table10
    assert "γ 4e-2, 20 steps" in ours and "20.0 → 30.0 (+50.0%)" in ours and "40.0 → 50.0 (+25.0%)" in ours
    assert len(text.splitlines()) == 5  # the 80-step runs are not there: no row for them


def test_the_second_draw_is_read_on_the_cases_all_four_runs_share(tmp_path):
    test, seed = tmp_path / "test", tmp_path / "seed"
    test.mkdir(), seed.mkdir()
    finished(test, "rome_s20", {}, rows(rs=20.0))
    finished(test, "rome_sadr_g0.04_s20", sadr(0.04, 20), rows(rs=40.0))
    with RecordLog(seed / "rome_s20_p1.json.partial.jsonl", BASE | {"hp": {"prefix_seed": "1"}}) as log:
        for r in rows(rs=30.0, ids=["0", "1"]):  # a draw still running: two cases so far
            log.append(r)
    text = tables.seed_table(tables.load_points(test), tables.load_points(seed))
    assert text.startswith("On the 4 test cases the finished runs share")
    assert "| ROME, draw 1 | 100.0 | 100.0 | 50.0 | 30.0 |" in text  # its two cases
    assert "| draw effect on ROME (1 − 0) | +0.0 (0/0) | +0.0 (0/0) | +0.0 (0/0) | +10.0 (2/0) |" in text
    assert "| SADR effect, draw 0 | +0.0 (0/0) | +0.0 (0/0) | +0.0 (0/0) | +20.0 (4/0) |" in text  # all 4
    assert "SADR effect, draw 1" not in text  # its SADR run has not started


def test_retention_reads_running_checkpoints_and_finished_runs(tmp_path):
    from drift.cli.runs import append_record

    def summary(es, em):
        return {"ES": es, "EM": em}

    for n, em in ((10, 50.0), (25, 40.0)):  # a run still going: its logged checkpoints
        append_record(
            tmp_path / "sequential-checkpoints.jsonl",
            {"key": "k1", "label": "MEMIT", "n_edits": n, "summary": summary(80.0, em), "cases": []},
        )
    checkpoints = [
        {"n_edits": n, "summary": summary(90.0, 40.0 - n / 10), "cases": []} for n in (10, 25, 50, 100)
    ]
    record = {
        "key": "k2",
        "label": "ADAPLE +DR(p=0.8)",
        "config": {"retention": 10},
        "checkpoints": checkpoints,
    }
    append_record(tmp_path / "sequential-runs.jsonl", record)
    append_record(
        tmp_path / "sequential-runs.jsonl", {"key": "k3", "label": "old", "config": {}, "checkpoints": []}
    )
    text = tables.retention_table(tmp_path)
    memit, adaple = text.splitlines()[2:4]
    assert (
        memit
        == "| MEMIT | 80.0 / 50.0 | 80.0 / 40.0 | — | — | -20.0% / — / — | running (last checkpoint 25) |"
    )
    assert adaple.startswith("| ADAPLE +DR(p=0.8) | 90.0 / 39.0 | 90.0 / 37.5 | 90.0 / 35.0 | 90.0 / 30.0 |")
    assert adaple.endswith("| -3.8% / -10.3% / -23.1% | finished |") and "old" not in text


def test_memits_grid_takes_memit_alone_as_its_reference(tmp_path):
    memit = {"editor": "memit"}
    finished(tmp_path, "memit_s20", memit, rows(rs=20.0))
    finished(tmp_path, "memit_sadr_g0.04_s20", memit | sadr(0.04, 20), rows(rs=50.0))
    finished(tmp_path, "memit_sadr_g0.08_s20", memit | sadr(0.08, 20), rows(rs=80.0, ps=50.0))
    points = tables.load_points(tmp_path)
    chosen, ref, why = tables.select(points)
    assert ref.name == "memit_s20" and chosen.name == "memit_sadr_g0.04_s20"
    assert why["memit_sadr_g0.08_s20"] == "PS -50.0"
    text = tables.grid_table(points)
    assert "MEMIT's, same cases" in text and "| **MEMIT+SADR γ=0.04** | 20 |" in text
    assert "against MEMIT's 40.0" in text


def test_the_audit_table_reads_finished_and_running_shards(tmp_path):
    import json

    from drift.interp.audit import auroc

    def case(i: int, label: int | None, leak: float) -> dict:
        broken = {"NS": 0, "DNS": 2 * (label or 0)}
        return {
            "case_id": str(i),
            "metrics": {"leak_context": leak, "leak_relation": -leak, "subject_gain": 0.1, "head_kl": i / 10}
            | {"update_size": 0.05},
            "failures": None if label is None else broken,
            "right_before": None if label is None else {"NS": 4, "DNS": 3},
            "prompts": {"NS": 4, "DNS": 4},
            "label": label,
        }

    labels = [1, 0, 1, 0, 1, 1, 0, None]
    cases = [case(i, y, leak) for i, (y, leak) in enumerate(zip(labels, [3, 1, 2, 4, 5, 0.5, 0.2, 9]))]
    (tmp_path / "a34.json").write_text(json.dumps({"cases": cases[:5], "summary": {}}))
    log = [{"drift_run": 1, "key": "k", "config": {}}, *cases[5:]]
    (tmp_path / "a35.json.partial.jsonl").write_text("\n".join(map(json.dumps, log)) + '\n{"case_id": "cut')
    text = tables.audit_table(tmp_path, boot=50)
    assert text.startswith("8 of 207 cases audited, 7 labelled")
    assert "34 finished (5), 35 running (3 so far), 36 not started" in text
    kept = [c for c in cases if c["label"] is not None]
    expected = auroc([c["metrics"]["leak_context"] for c in kept], [c["label"] for c in kept])
    assert f"| leak_context | {expected:.2f} [" in text
    dns = next(line for line in text.splitlines() if line.startswith("| DNS |"))
    assert dns.startswith("| DNS | 21 | 8 | ")  # 7 cases x 3 right before; 4 failing edits x 2 broken
    assert "As one family of 25 AUROCs (Bonferroni, 99.8% intervals): " in text
    assert "(fewer than 4 labelled" in tables.audit_table(tmp_path / "none", boot=50)
