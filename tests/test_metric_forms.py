"""FL, PPL, RES, subject-alias and consistency computed as the reference evaluation computes them
(``easyeditor/evaluate/my_evaluate.py``, ``examples/summrize.py``), each other form kept as an
option. Every expected value is worked out by hand here, from counts and probabilities written in
the test, never with drift's own helpers, so a test fails when a computation is replaced by the
other form."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import drift.evaluation.evaluate as ev
from drift.data import parse_case
from drift.evaluation.metrics import (
    FLUENCY_FORMS,
    TfidfStats,
    clean_generation,
    consistency,
    load_reference_texts,
    n_gram_entropy,
    plan_case,
    tfidf_similarity,
)
from drift.evaluation.spec import EvalSpec
from drift.evaluation.words import sentences, word_tokenize
from tests.test_data import MERGED


def _entropy(counts: list[int]) -> float:
    total = sum(counts)
    return -sum(c / total * math.log2(c / total) for c in counts)


def _fl(bigram_counts: list[int], trigram_counts: list[int]) -> float:
    # the reference: np.mean([2/3 · H2, 4/3 · H3])
    return (2 / 3 * _entropy(bigram_counts) + 4 / 3 * _entropy(trigram_counts)) / 2


# ---- FL ---------------------------------------------------------------------------------------
TEXT = "a b, a b, a b."


def test_fluency_counts_treebank_words_by_default():
    # words: a b , a b , a b .  -> bigrams (a b)x3 (b ,)x2 (, a)x2 (b .)x1;
    # trigrams (a b ,)x2 (b , a)x2 (, a b)x2 (a b .)x1
    want = _fl([3, 2, 2, 1], [2, 2, 2, 1])
    assert n_gram_entropy([TEXT]) == pytest.approx(want)
    # whitespace words: a b, a b, a b.  -> bigrams (a b,)x2 (b, a)x2 (a b.)x1;
    # trigrams (a b, a)x2 (b, a b,)x1 (b, a b.)x1
    short = _fl([2, 2, 1], [2, 1, 1])
    assert n_gram_entropy([TEXT], words="whitespace") == pytest.approx(short)
    assert abs(want - short) > 0.1


def test_fluency_averages_texts_and_weights_trigrams_double():
    texts = ["x y x y", "p q r s"]  # the first: bigrams (x y)x2 (y x)x1, trigrams (x y x)(y x y)
    want = (_fl([2, 1], [1, 1]) + _fl([1, 1, 1], [1, 1])) / 2
    assert n_gram_entropy(texts) == pytest.approx(want)


def test_words_split_sentence_final_periods_and_keep_abbreviations():
    assert word_tokenize("Paris is big. It is old.") == ["Paris", "is", "big", ".", "It", "is", "old", "."]
    assert word_tokenize("Mr. Li met Dr. Wu in the U.S. today.") == [
        "Mr.",
        "Li",
        "met",
        "Dr.",
        "Wu",
        "in",
        "the",
        "U.S.",
        "today",
        ".",
    ]
    assert word_tokenize('She said "no" and didn\'t (really).') == [
        "She",
        "said",
        "``",
        "no",
        "''",
        "and",
        "did",
        "n't",
        "(",
        "really",
        ")",
        ".",
    ]
    assert sentences("J. Smith won in 1990. then left. Why? Fine...") == [
        "J. Smith won in 1990. then left.",
        "Why?",
        "Fine...",
    ]


def test_words_are_nltk_word_tokenize_on_nltks_english_punkt_data(tmp_path, monkeypatch):
    """drift's words are the reference's ``nltk.word_tokenize``: the same Punkt parameters, written
    out as NLTK's ``punkt_tab`` files and read back by NLTK itself, give the same tokens, on texts
    where Punkt's learnt abbreviations and orthographic statistics decide."""
    import nltk
    import punkt

    english = punkt.load_model("english")
    folder = tmp_path / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True)
    (folder / "abbrev_types.txt").write_text("\n".join(sorted(english.abbrev_types)) + "\n")
    (folder / "sent_starters.txt").write_text("\n".join(sorted(english.sent_starters)) + "\n")
    (folder / "collocations.tab").write_text("".join(f"{a}\t{b}\n" for a, b in sorted(english.collocations)))
    (folder / "ortho_context.tab").write_text(
        "".join(f"{w}\t{v}\n" for w, v in sorted(english.ortho_context.items()))
    )
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    texts = [
        "Ludology, Cornelius, et al. Monell Chemical Senses Center is based in Philadelphia.",
        "Mozart, (Variations in F Major, K. 398); Beethoven (Sonata Op. 27). The rest is silence.",
        "The investment was $750,000. The domain of activity of Justus von Liebig is",
        "Gold Portfolio 1962–1974. In Chukotka, Russian is spoken. Mr. Li met Dr. Wu in the U.S. today.",
        "\"Hello,\" she said. 'Hi' -- it's 'quoted' (yes) [no] {x} <y> a*b #tag @me $5 50% A&B; ok!?",
        "“Curly” ‘single’ «guil» cannot gonna wanna 'tis more'n d'ye; he's gone... 3.5 and 3,000 at 10:30.",
    ]
    for text in texts:
        assert word_tokenize(text) == nltk.word_tokenize(text), text
    # where drift's earlier hand-written split differed from Punkt's English model
    assert word_tokenize(texts[0])[:6] == ["Ludology", ",", "Cornelius", ",", "et", "al"]
    assert "1962–1974" in word_tokenize(texts[3])  # NLTK < 3.10 keeps a dash inside a word


def test_reference_text_cleaning():
    assert clean_generation("ﬁne\n\nday<|endoftext|>", ["<|endoftext|>"]) == "fine day"


class _Recorder:
    """Stands in for ``generate``: records each call, returns fixed texts."""

    def __init__(self, text: str):
        self.calls: list[dict] = []
        self.text = text

    def __call__(self, model, prompts, **kw):
        self.calls.append({"prompts": list(prompts), **kw})
        return [self.text] * len(prompts)


def _gen_case():
    return parse_case({**MERGED, "generation": {"prompts": ["P1", "P2", "P3", "P4"]}})


def test_reference_fluency_uses_every_prompt_to_100_tokens_in_all(tiny, monkeypatch):
    rec = _Recorder(TEXT)
    monkeypatch.setattr(ev, "generate", rec)
    row = ev.evaluate(tiny, [_gen_case()], progress=False)[0]
    (call,) = rec.calls
    assert call["prompts"] == ["P1", "P2", "P3", "P4"] and call["max_length"] == 100
    assert row["metrics"]["FL"] == pytest.approx(_fl([3, 2, 2, 1], [2, 2, 2, 1]))


def test_short_fluency_is_two_prompts_forty_new_tokens_whitespace(tiny, monkeypatch):
    rec = _Recorder(TEXT)
    monkeypatch.setattr(ev, "generate", rec)
    row = ev.evaluate(tiny, [_gen_case()], spec=EvalSpec(fluency="short"), progress=False)[0]
    (call,) = rec.calls
    assert call["prompts"] == ["P1", "P2"] and call["max_new_tokens"] == 40 and call["max_length"] is None
    assert row["metrics"]["FL"] == pytest.approx(_fl([2, 2, 1], [2, 1, 1]))
    assert FLUENCY_FORMS["short"].words == "whitespace"


def test_generate_to_a_total_length_counts_the_prompt(tiny, monkeypatch):
    asked = []
    real = tiny.sample

    def sample(tokens, new, **kw):
        asked.append((tokens.shape[1], new))
        return real(tokens, new, **kw)

    monkeypatch.setattr(tiny, "sample", sample)
    prompts = ["The Eiffel Tower is", "The capital of Japan is the city of"]
    ev.generate(tiny, prompts, max_length=20)
    lengths = sorted(len(tiny.encode(p)) for p in prompts)
    assert sorted(asked) == [(n, 20 - n) for n in lengths]


# ---- PPL --------------------------------------------------------------------------------------
class _Chain:
    """A model over 26 letters whose logits favour the next letter: logit 1 for (t + 1) mod 26,
    0 for the rest; so P(next letter) = e / (e + 25), any other 1 / (e + 25). Spaces are not
    tokens."""

    device = torch.device("cpu")
    pad_id = 0

    def encode(self, text: str) -> list[int]:
        return [ord(c) - ord("a") for c in text if c != " "]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot((tokens + 1) % 26, 26).float()

    def pad(self, seqs):
        lengths = torch.tensor([len(s) for s in seqs])
        out = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s)
        return out, lengths


P_NEXT = math.e / (math.e + 25)
P_OTHER = 1 / (math.e + 25)


def test_reference_perplexity_joins_cuts_to_100_tokens_and_divides_by_their_count():
    texts = ["abcdefghijklmnopqrstuvwxyz"] * 5  # joined: 130 tokens, each the previous one's next
    # first 100 tokens, 99 predictions each P_NEXT, divided by 100 tokens
    want = math.exp(-99 * math.log(P_NEXT) / 100)
    assert ev.perplexity(_Chain(), texts) == pytest.approx(want, rel=1e-6)
    # not divided by the 99 predictions, nor over all 130 tokens
    assert abs(want - 1 / P_NEXT) > 1e-3 and abs(want - math.exp(-129 * math.log(P_NEXT) / 130)) > 1e-4


def test_reference_perplexity_scores_the_joint_across_texts():
    # "abc" + "xyz": a->b, b->c hit; c->x misses; x->y, y->z hit: 5 predictions over 6 tokens
    want = math.exp(-(4 * math.log(P_NEXT) + math.log(P_OTHER)) / 6)
    assert ev.perplexity(_Chain(), ["abc", "xyz"]) == pytest.approx(want, rel=1e-6)


def test_per_text_perplexity_is_drifts_earlier_mean():
    # each text alone: "abc" 2 hits -> 1/P_NEXT; "acb" a->c, c->b both miss -> 1/P_OTHER
    want = (1 / P_NEXT + 1 / P_OTHER) / 2
    assert ev.perplexity(_Chain(), ["abc", "acb"], form="per-text") == pytest.approx(want, rel=1e-6)


# ---- RES and the subject-alias score ---------------------------------------------------------
def _reasoning_case():
    return parse_case(
        {
            **MERGED,
            "p-reasoning": {"prompts": ["Rome's tower is in"], "targets": ["Lazio Italy"]},
            "p-subject_alias": {
                "prompts": ["The Tour Eiffel is located in", "La dame de fer is located in"],
                "targets": ["Rome", "Roma"],
            },
        }
    )


def test_res_compares_the_reasoning_answer_with_o_true():
    plan = plan_case(_reasoning_case())
    ((right, wrong),) = plan.comparisons["RES"]
    assert plan.pairs[right] == ("Rome's tower is in", "Lazio Italy")
    assert plan.pairs[wrong] == ("Rome's tower is in", "Paris")
    n = len(plan.pairs)
    lp, ntok, acc = torch.zeros(n), torch.ones(n), torch.zeros(n)
    # answer: -2.0 over 2 tokens (-1.0 per token) against o_true's -1.5 over 1 token: right wins
    lp[right], ntok[right], acc[right] = -2.0, 2, 0.5
    lp[wrong] = -1.5
    m = plan.metrics(lp, acc, ntok)
    assert m["RES"] == 100.0 and m["RES_k"] == 1
    assert m["REM"] == pytest.approx(100 * math.exp(-1.0))
    assert plan.metrics(lp, acc, ntok, scoring="product")["RES"] == 0.0  # -2.0 < -1.5


def test_res_accuracy_is_drifts_earlier_form():
    plan = plan_case(_reasoning_case(), res="accuracy")
    (idx,) = plan.accuracies["RES"]
    assert plan.pairs[idx] == ("Rome's tower is in", "Lazio Italy") and "RES" not in plan.comparisons
    n = len(plan.pairs)
    acc = torch.zeros(n)
    acc[idx] = 0.5
    m = plan.metrics(torch.zeros(n), acc, torch.ones(n))
    assert m["RES"] == 50.0 and m["RES_k"] == 1


def test_subject_alias_prompts_score_their_own_target_against_o_true():
    plan = plan_case(_reasoning_case())
    pairs = [(plan.pairs[r], plan.pairs[w]) for r, w in plan.comparisons["SAS"]]
    assert pairs == [
        (("The Tour Eiffel is located in", "Rome"), ("The Tour Eiffel is located in", "Paris")),
        (("La dame de fer is located in", "Roma"), ("La dame de fer is located in", "Paris")),
    ]
    n = len(plan.pairs)
    lp = torch.full((n,), -5.0)
    (r1, w1), (r2, w2) = plan.comparisons["SAS"]
    lp[r1], lp[w1], lp[r2], lp[w2] = -1.0, -2.0, -3.0, -0.5
    m = plan.metrics(lp, torch.ones(n), torch.ones(n))
    assert m["SAS"] == 50.0 and m["SAS_k"] == 2
    assert m["SAM"] == pytest.approx(100 * (math.exp(-1.0) + math.exp(-3.0)) / 2)


# ---- consistency (RefS) -----------------------------------------------------------------------
DOCS = ["paris is nice", "rome is nice", "rome rome"]
# n = 3; document frequencies paris 1, is 2, nice 2, rome 2; idf = ln((1 + n) / (1 + df)) + 1
IDF_PARIS, IDF_OTHER = math.log(4 / 2) + 1, math.log(4 / 3) + 1


def test_tfidf_similarity_is_the_cosine_of_count_times_idf():
    stats = TfidfStats.fit(DOCS)
    # "paris rome rome": paris 1·IDF_PARIS, rome 2·IDF_OTHER; "rome is a": rome, is (1-letter words drop)
    a = np.array([IDF_PARIS, 2 * IDF_OTHER, 0.0])
    b = np.array([0.0, IDF_OTHER, IDF_OTHER])
    want = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert tfidf_similarity("Paris rome ROME", "rome is a", stats) == pytest.approx(want)
    # all generations joined against all reference texts joined
    assert consistency(["Paris rome", "ROME"], ["rome", "is a"], stats) == pytest.approx(want)
    assert math.isnan(tfidf_similarity("unknown words", "rome", stats))


def test_reference_texts_load_ids_and_given_idf(tmp_path):
    snips = [
        {"relation_id": "P1", "target_id": "Q2", "samples": [{"text": "rome is nice"}, {"text": "rome"}]},
        {"relation_id": "P1", "target_id": "Q3", "samples": [{"text": "paris"}]},
    ]
    (tmp_path / "attribute_snippets.json").write_text(json.dumps(snips))
    refs = load_reference_texts(tmp_path)
    assert refs.texts[("P1", "Q2")] == ("rome is nice", "rome")
    # fitted on the 3 snippets: df rome 2, is 1, nice 1, paris 1
    assert refs.stats.idf[refs.stats.vocab["rome"]] == pytest.approx(math.log(4 / 3) + 1)
    np.save(tmp_path / "idf.npy", np.array([2.0, 5.0]))
    (tmp_path / "tfidf_vocab.json").write_text(json.dumps({"rome": 0, "nice": 1}))
    refs = load_reference_texts(tmp_path)
    # "rome nice" vs "nice": (2·0 + 5·5) / (√(4 + 25) · 5)
    assert tfidf_similarity("rome nice", "nice", refs.stats) == pytest.approx(5 / math.sqrt(29))


def test_evaluate_reports_refs_for_a_case_with_reference_texts(tiny, monkeypatch, tmp_path):
    snips = [{"relation_id": "P276", "target_id": "Q220", "samples": [{"text": "rome city"}, {"text": "x"}]}]
    (tmp_path / "attribute_snippets.json").write_text(json.dumps(snips))
    np.save(tmp_path / "idf.npy", np.array([1.0, 3.0]))
    (tmp_path / "tfidf_vocab.json").write_text(json.dumps({"rome": 0, "city": 1}))
    raw = {**MERGED, "generation": {"prompts": ["P1"]}}
    raw["requested_rewrite"] = {**MERGED["requested_rewrite"], "relation_id": "P276", "target_new_id": "Q220"}
    monkeypatch.setattr(ev, "generate", _Recorder("rome rome"))
    refs = load_reference_texts(tmp_path)
    row = ev.evaluate(tiny, [parse_case(raw)], spec=EvalSpec(references=refs), progress=False)[0]
    # (2·1, 0) against (1, 3): 2 / (2 · √10)
    assert row["metrics"]["RefS"] == pytest.approx(1 / math.sqrt(10))
    no_ids = ev.evaluate(
        tiny, [parse_case({**MERGED, "generation": {"prompts": ["P1"]}})], spec=EvalSpec(references=refs)
    )
    assert "RefS" not in no_ids[0]["metrics"]


def test_a_bad_form_scoring_or_pool_is_refused_naming_the_option():
    from drift.evaluation.metrics import check_forms, check_scoring, summarise

    for kw, name in (("fluency", "fluency"), ("ppl", "ppl_form"), ("res", "res")):
        with pytest.raises(ValueError, match=rf"^{name} must be one of \(.*\), got 'odd'$"):
            check_forms(**{kw: "odd"})
    with pytest.raises(ValueError, match=r"^scoring must be one of \('mean', 'product'\), got 'odd'$"):
        check_scoring("odd")
    with pytest.raises(ValueError, match=r"^pool must be one of \('prompts', 'cases'\), got 'odd'$"):
        check_scoring("mean", "odd")
    with pytest.raises(ValueError, match=r"^pool must be one of"):
        summarise([{"ES": 100.0}], pool="odd")
    with pytest.raises(ValueError, match=r"^words must be 'treebank' or 'whitespace', got 'odd'$"):
        n_gram_entropy(["a b c"], words="odd")


def test_a_results_files_scoring_and_pool_default_to_what_files_before_them_used():
    from drift.evaluation.metrics import scoring_of

    assert scoring_of({}) == ("product", "cases")
    assert scoring_of({"scoring": "mean", "pool": "prompts"}) == ("mean", "prompts")


def test_means_and_intervals_of_no_one_or_two_values():
    from scipy.stats import t

    from drift.evaluation.metrics import harmonic_mean, mean_ci95

    assert math.isnan(harmonic_mean([])) and math.isnan(harmonic_mean([50.0, float("nan")]))
    assert mean_ci95([40.0]) == (40.0, 40.0, 40.0)  # one value: no spread, no interval
    half = t.ppf(0.975, 1) * 10.0  # two values 40, 60: standard error 10 on 1 degree of freedom
    assert mean_ci95([40.0, 60.0]) == pytest.approx((50.0, 50.0 - half, 50.0 + half), rel=1e-9)


def test_reference_texts_about_a_case_need_both_its_ids():
    from dataclasses import replace

    from drift.evaluation.metrics import ReferenceTexts

    refs = ReferenceTexts({("P1", "Q2"): ("rome is nice",)}, TfidfStats.fit(["rome is nice"]))
    case = replace(parse_case(MERGED), relation_id="P1", o_edit_id="Q2")
    assert refs.about(case) == ("rome is nice",)
    assert refs.about(replace(case, o_edit_id=None)) is None
    assert refs.about(replace(case, relation_id=None)) is None
    assert refs.about(replace(case, o_edit_id="Q9")) is None


def test_bad_reference_text_folders_are_refused_naming_the_file(tmp_path):
    with pytest.raises(
        ValueError, match=r"attribute_snippets.json does not exist \(ROME's attribute_snippets.json\)"
    ):
        load_reference_texts(tmp_path)
    snips = tmp_path / "attribute_snippets.json"
    snips.write_text(json.dumps([{"relation_id": "P1"}]))
    with pytest.raises(ValueError, match=r"attribute_snippets.json is not ROME's snippet format \(KeyError"):
        load_reference_texts(tmp_path)
    snips.write_text(
        json.dumps([{"relation_id": "P1", "target_id": "Q2", "samples": [{"text": "rome is nice"}]}])
    )
    np.save(tmp_path / "idf.npy", np.array([2.0, 5.0]))  # without its vocabulary: fitted on the snippets
    assert load_reference_texts(tmp_path).stats.vocab == {"is": 0, "nice": 1, "rome": 2}
    (tmp_path / "tfidf_vocab.json").write_text(json.dumps({"rome": 0, "nice": 2}))  # index 2 of 2 values
    with pytest.raises(ValueError, match=r"idf.npy has \(2,\) values for 2 words"):
        load_reference_texts(tmp_path)
    np.save(tmp_path / "idf.npy", np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"idf.npy has \(3, 1\) values for 2 words"):
        load_reference_texts(tmp_path)
