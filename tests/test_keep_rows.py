"""Finished rows are never lost to a later run on the same ``--out``: a smaller ``--limit``, another
shard, or a partial merge is refused (or, with ``--restart``, sets the file aside), and a log's
cases beyond the run's are kept for the run that wants them (issue 47, items 1-4)."""

from __future__ import annotations

import json

from drift.__main__ import cli, main


def _eval(tiny_dir, out, *extra) -> int:
    return cli(["eval", "--model", tiny_dir, "--no-fluency", "--quiet", "--out", str(out), *extra])


def _ids(path) -> list[str]:
    return [c["case_id"] for c in json.loads(path.read_text())["cases"]]


def test_a_smaller_limit_keeps_the_logged_cases_beyond_it(tiny_dir, tmp_path, monkeypatch, capsys):
    import drift.evaluation.evaluate as ev

    real, seen = ev.evaluate, []

    def three_then_ctrl_c(model, cases, *, on_case, **kw):
        real(model, cases[:3], on_case=on_case, **kw)
        raise KeyboardInterrupt

    out = tmp_path / "r.json"
    monkeypatch.setattr(ev, "evaluate", three_then_ctrl_c)
    assert _eval(tiny_dir, out, "--limit", "5") == 130
    monkeypatch.setattr(ev, "evaluate", real)
    assert _eval(tiny_dir, out, "--limit", "1") == 0
    assert _ids(out) == ["0"]
    log = tmp_path / "r.json.partial.jsonl"
    assert log.exists() and "keeps 2 finished case(s) beyond this run's cases" in capsys.readouterr().err

    def counting(model, cases, **kw):
        seen.extend(c.case_id for c in cases)
        return real(model, cases, **kw)

    monkeypatch.setattr(ev, "evaluate", counting)
    assert _eval(tiny_dir, out, "--limit", "5") == 0  # the larger run resumes: only 2 cases computed
    assert seen == ["3", "4"] and _ids(out) == ["0", "1", "2", "3", "4"] and not log.exists()


def test_another_shard_or_a_smaller_limit_does_not_overwrite_finished_results(tiny_dir, tmp_path, capsys):
    out = tmp_path / "sh.json"
    assert _eval(tiny_dir, out, "--limit", "4", "--shard", "1/2") == 0
    before = out.read_text()
    assert _eval(tiny_dir, out, "--limit", "4", "--shard", "2/2") == 2
    err = capsys.readouterr().err
    assert "cases this run does not write" in err and "merge" in err and out.read_text() == before
    assert _eval(tiny_dir, out, "--limit", "1") == 2 and out.read_text() == before
    assert _eval(tiny_dir, out, "--limit", "4", "--shard", "2/2", "--restart") == 0
    assert len(list(tmp_path.glob("sh.json.aside-*"))) == 1  # set aside, not deleted


def test_a_partial_merge_does_not_overwrite_the_whole_run(tiny_dir, tmp_path, capsys):
    full, part = tmp_path / "full.json", tmp_path / "part.json"
    assert _eval(tiny_dir, part, "--limit", "4", "--shard", "1/2") == 0
    assert _eval(tiny_dir, tmp_path / "two.json", "--limit", "4", "--shard", "2/2") == 0
    assert main(["merge", str(part), str(tmp_path / "two.json"), "--out", str(full)]) == 0
    before = full.read_text()
    assert cli(["merge", str(part), "--allow-missing", "--out", str(full)]) == 2
    assert "cases this run does not write" in capsys.readouterr().err and full.read_text() == before
