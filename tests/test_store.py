"""Caches: atomic folders and tensor files; damaged files detected; concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from drift.util.store import CorruptCacheError, building_dir, load_tensors, save_tensors, verify_dir


def test_interrupted_build_leaves_nothing(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        with building_dir(final) as tmp:
            (tmp / "weights.bin").write_bytes(b"x" * 100)
            raise KeyboardInterrupt
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_fails_verification(tmp_path):
    final = tmp_path / "model"
    with building_dir(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"x" * 100)
    assert verify_dir(final) and verify_dir(final, digests=True)
    (final / "weights.bin").write_bytes(b"x" * 50)
    assert not verify_dir(final)


def test_same_size_corruption_caught_by_digest(tmp_path):
    final = tmp_path / "model"
    with building_dir(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"x" * 100)
    (final / "weights.bin").write_bytes(b"y" * 100)
    assert verify_dir(final) and not verify_dir(final, digests=True)


def test_tensor_file_round_trip_and_corruption(tmp_path):
    path = tmp_path / "c.safetensors"
    save_tensors(path, {"C": torch.arange(6.0).reshape(2, 3)}, {"layer": "4"})
    tensors, meta = load_tensors(path)
    assert torch.equal(tensors["C"], torch.arange(6.0).reshape(2, 3)) and meta == {"layer": "4"}
    data = path.read_bytes()
    path.write_bytes(data[:-8])
    with pytest.raises(CorruptCacheError, match="c.safetensors"):
        load_tensors(path)
    path.write_bytes(data[:-4] + b"\x00\x00\x80\x7f")  # same length, last float altered
    with pytest.raises(CorruptCacheError, match="digest"):
        load_tensors(path)


def _fill(final: str, payload: bytes) -> None:
    with building_dir(Path(final)) as tmp:
        for i in range(20):
            (tmp / f"part{i}").write_bytes(payload * 1000)


def test_two_processes_filling_one_cache_end_with_one_valid_folder(tmp_path):
    final = tmp_path / "model"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_fill, args=(str(final), bytes([65 + k]))) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert verify_dir(final, digests=True)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folders left


def test_saved_objects_round_trip_and_damage_is_detected(tmp_path):
    from drift.util.store import load_object, save_object

    path = tmp_path / "case.pt"
    save_object(path, {"x": torch.arange(3), "label": "ok"})
    back = load_object(path)
    assert back["label"] == "ok" and back["x"].tolist() == [0, 1, 2]
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CorruptCacheError, match="case.pt is unreadable"):
        load_object(path)


def test_record_log_skips_a_line_cut_by_an_interruption(tmp_path):
    from drift.cli.runs import append_record, read_records

    log = tmp_path / "runs.jsonl"
    assert read_records(log) == {}
    append_record(log, {"key": "a", "summary": {"ES": 1.0}})
    append_record(log, {"key": "b", "summary": {"ES": 2.0}})
    with log.open("a") as f:
        f.write('{"key": "c", "summ')  # the process died mid-write
    assert {k: r["summary"]["ES"] for k, r in read_records(log).items()} == {"a": 1.0, "b": 2.0}


def test_a_file_overwritten_in_place_is_caught_at_the_next_load(tmp_path, monkeypatch):
    import drift.util.store as store

    final = tmp_path / "model"
    with building_dir(final) as tmp:
        (tmp / "weights.bin").write_bytes(b"x" * 100)
    hashed = []
    real_digest = store.file_digest
    monkeypatch.setattr(store, "file_digest", lambda p: hashed.append(p) or real_digest(p))
    assert store.verify_dir_stamped(final) and len(hashed) == 1  # first load: full check, stamp written
    assert store.verify_dir_stamped(final) and len(hashed) == 1  # unchanged: the stamp is trusted
    with open(final / "weights.bin", "r+b") as f:  # same size, new bytes (and a new mtime)
        f.seek(10)
        f.write(b"\x7f\x7f")
    assert not store.verify_dir_stamped(final) and len(hashed) == 2


def _flip(path, offset: int) -> None:
    """Bytes changed in place with the modification time put back (bit rot, a `cp -p` restore)."""
    import os

    st = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(4)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in old))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_bytes_flipped_with_the_mtime_restored_are_caught(tmp_path, monkeypatch):
    """Every load hashes each file in full (XXH3): 4 bytes flipped anywhere, the modification time
    put back, are found at the next load, also between the chunks a sampled digest reads."""
    import drift.util.store as store

    small, big = tmp_path / "small", tmp_path / "big"
    with building_dir(small) as tmp:
        (tmp / "model.safetensors").write_bytes(bytes(range(256)) * 400)
    with building_dir(big) as tmp:
        (tmp / "model.safetensors").write_bytes(bytes(range(256)) * (20 << 12))  # 20 MiB
    hashed = []
    real_digest = store.file_digest
    monkeypatch.setattr(store, "file_digest", lambda p: hashed.append(p.parent.name) or real_digest(p))
    assert store.verify_dir_stamped(small) and store.verify_dir_stamped(big)  # first loads: SHA-256
    assert store.verify_dir_stamped(small) and store.verify_dir_stamped(big)  # then XXH3 only
    assert hashed == ["small", "big"]
    _flip(small / "model.safetensors", 5000)
    assert store.damaged_files(small) == ["model.safetensors"]
    weights = big / "model.safetensors"
    spacing = (weights.stat().st_size - store.SAMPLE_BYTES) // (store.SAMPLE_CHUNKS - 1)
    between = (store.SAMPLE_BYTES + spacing) // 2  # no sampled chunk reads it
    _flip(weights, between)
    assert not store.verify_dir_stamped(big)
    _flip(weights, between)  # put right again
    assert store.verify_dir_stamped(big)


def test_a_folder_too_slow_to_hash_on_every_load_is_sampled_and_hashed_in_full_weekly(tmp_path, monkeypatch):
    """Where the last full fast hash took longer than ``FAST_HASH_SECONDS``, loads compare sizes,
    modification times and a sampled digest; damage between the samples waits for `drift doctor`
    or the weekly full check."""
    import time

    import drift.util.store as store

    big = tmp_path / "big"
    with building_dir(big) as tmp:
        (tmp / "model.safetensors").write_bytes(bytes(range(256)) * (20 << 12))
    monkeypatch.setattr(store, "FAST_HASH_SECONDS", -1.0)  # any measured time is too slow
    fast = []
    real_fast = store.fast_digest
    assert store.verify_dir_stamped(big)
    monkeypatch.setattr(store, "fast_digest", lambda p: fast.append(p) or real_fast(p))
    assert store.verify_dir_stamped(big) and fast == []  # sampled, not hashed
    weights = big / "model.safetensors"
    spacing = (weights.stat().st_size - store.SAMPLE_BYTES) // (store.SAMPLE_CHUNKS - 1)
    in_chunk, between = 128 * spacing + 100, (store.SAMPLE_BYTES + spacing) // 2
    _flip(weights, in_chunk)
    assert not store.verify_dir_stamped(big)
    _flip(weights, in_chunk)
    assert store.verify_dir_stamped(big)
    _flip(weights, between)
    assert store.verify_dir_stamped(big)  # missed by the sample; the full checks find it:
    assert not store.verify_dir_stamped(big, full=True)  # `drift doctor`
    stamp = json.loads((big / store.STAMP).read_text())
    stamp["checked"] = time.time() - store.FULL_CHECK_EVERY - 1  # a week after the last full check
    (big / store.STAMP).write_text(json.dumps(stamp))
    assert not store.verify_dir_stamped(big)


def test_the_fast_hash_is_xxh3_of_the_whole_file(tmp_path):
    import xxhash

    from drift.util.store import fast_digest

    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 70000)  # over several read chunks
    assert fast_digest(path) == xxhash.xxh3_128(path.read_bytes()).hexdigest()


def test_doctor_re_hashes_every_cache_and_fix_deletes_the_damaged(tmp_path, monkeypatch, capsys):
    from drift.__main__ import main

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    with building_dir(tmp_path / "models" / "m") as tmp:
        (tmp / "model.safetensors").write_bytes(b"w" * 1000)
    save_tensors(tmp_path / "stats" / "c.safetensors", {"C": torch.eye(2)}, {})
    assert main(["doctor"]) == 0
    assert "checked 2 cache entries" in capsys.readouterr().out
    _flip(tmp_path / "models" / "m" / "model.safetensors", 10)
    assert main(["doctor"]) == 1
    report = capsys.readouterr().out
    assert f"{tmp_path / 'models' / 'm'}: DAMAGED" in report and "1 damaged" in report
    assert main(["doctor", "--fix"]) == 0
    assert not (tmp_path / "models" / "m").exists() and (tmp_path / "stats" / "c.safetensors").exists()


def test_doctor_verifies_text_caches_one_changed_character_is_damage(tmp_path, monkeypatch, capsys):
    """Sampled prefixes are cached with a digest: `drift doctor` reports one changed character
    (it used to only parse them: "0 damaged"), and a bare list an older drift wrote as
    unverifiable; `--fix` deletes both."""
    from drift.__main__ import main
    from drift.util.store import save_json_checked

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    good, changed, old = (tmp_path / "prefixes" / f"{n}.json" for n in ("good", "changed", "old"))
    save_json_checked(good, ["The first time I", "Because of"])
    save_json_checked(changed, ["The first time I", "Because of"])
    changed.write_text(changed.read_text().replace("first", "firsT"))
    old.write_text(json.dumps(["The first time I"]))
    assert main(["doctor"]) == 1
    report = capsys.readouterr().out.splitlines()
    assert f"{changed}: DAMAGED: does not match its recorded digest" in report
    assert (
        f"{old}: DAMAGED: has no recorded digest (written by an older drift): it cannot be verified" in report
    )
    assert f"{good}: ok" in report and any(line.endswith("; 2 damaged") for line in report)
    assert main(["doctor", "--fix"]) == 0
    assert good.exists() and not changed.exists() and not old.exists()


def test_results_json_is_strict_nan_written_as_null(tmp_path):
    """A NaN or infinite metric is written as ``null``: strict parsers read every JSON drift writes."""
    from drift.util.store import save_json

    path = tmp_path / "r.json"
    save_json(path, {"summary": {"PPL": float("nan"), "PPL_ci": [float("-inf"), 1.5]}, "n": (1, 2)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    strict = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict constant {name}"))
    assert strict == {"summary": {"PPL": None, "PPL_ci": [None, 1.5]}, "n": [1, 2]}


def test_a_json_write_that_fails_leaves_the_old_file_and_nothing_else(tmp_path, monkeypatch):
    import drift.util.store as store

    path = tmp_path / "r.json"
    store.save_json(path, {"cases": [1]})
    before = path.read_bytes()
    with pytest.raises(TypeError):  # not JSON: refused before anything is written
        store.save_json(path, {"cases": [object()]})

    def killed(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(store.os, "replace", killed)  # stopped between writing and renaming
    with pytest.raises(KeyboardInterrupt):
        store.save_json(path, {"cases": [2]})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["r.json"]
