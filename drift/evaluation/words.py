"""Word tokenisation for the fluency metric, as the papers' evaluation code splits text into words.

The reference evaluation counts n-grams over ``nltk.word_tokenize``: the text is cut into sentences
by NLTK's Punkt model for English, then each sentence into words by NLTK's improved Penn Treebank
rules. Punkt's English model is data that NLTK downloads at run time; drift downloads nothing and
depends on no NLTK, so this module writes both steps out:

- **sentences** (:func:`sentences`): a sentence ends after a whitespace-separated chunk whose last
  character, once closing quotes and brackets are set aside, is ``.``, ``?`` or ``!``, when more
  text follows after whitespace — except a chunk ending in ``..`` (an ellipsis), a single letter
  with its period (an initial: "J. Smith"), a common English abbreviation with its period
  (:data:`ABBREVIATIONS`: "Mr.", "U.S.", "etc."; a hyphenated word is judged by its last part), or
  a number with its period when the next word starts in lower case ("in 1990. the"). These are
  Punkt's own first-pass rules and the cases where its second pass keeps a period inside a
  sentence; what Punkt learns from data and drift does not have is its exact abbreviation list
  and the orthographic statistics that, rarely, end a sentence at an abbreviation ("U.S. The").
- **words** (:func:`treebank_words`): the Penn Treebank conventions as NLTK's ``NLTKWordTokenizer``
  applies them (no data needed): opening double quotes become ````` and closing ones ``''``;
  ``, ; : @ # $ % & ? ! * ( ) [ ] { } < >`` and ``--`` stand alone (a comma or colon only
  before a non-digit or at the end: "3,000" and "10:30" stay whole); ``...`` stands alone; only a
  sentence's *final* period is split off; clitics are split ("don't" -> "do n't", "we'll" ->
  "we 'll", "cannot" -> "can not", "gonna" -> "gon na").

Only the period rule depends on the sentence split: inside a sentence "Paris." stays one word, at
a sentence's end it is "Paris" and ".". On model-generated texts drift's tokens equal
``nltk.word_tokenize``'s (with NLTK's English Punkt data) wherever no abbreviation outside the list
ends a sentence; ``tests/test_metric_forms.py`` compares the word rules with NLTK's when NLTK is
installed.

Example:
    >>> text = 'He said "don\\'t go." Then Mr. Smith left... at 10:30, (quickly).'
    >>> word_tokenize(text)  # doctest: +NORMALIZE_WHITESPACE
    ['He', 'said', '``', 'do', "n't", 'go', '.', "''", 'Then', 'Mr.', 'Smith', 'left', '...',
     'at', '10:30', ',', '(', 'quickly', ')', '.']
"""

from __future__ import annotations

import re

# Common English abbreviations that take a period inside a sentence (lower case, without the final
# period). Punkt's English model learnt its list from newspaper text; this one holds the frequent
# titles, months, states, company and Latin abbreviations.
ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof rev hon st jr sr messrs mme mlle sen rep gov gen col lt sgt capt cmdr adm
    maj pres supt insp det fr
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thurs fri sat sun
    inc corp co ltd llc bros assn dept univ est
    u.s u.k u.n e.u u.s.a u.s.s.r d.c l.a n.y n.j
    ala ariz ark calif colo conn del fla ga ill ind kan ky la md mass mich minn miss mo mont neb
    nev okla ore pa tenn tex va vt wash wis wyo
    e.g i.e etc vs cf al approx ca viz
    no nos vol vols pp ed eds fig figs ch sec art ave blvd rd mt ft
    a.m p.m b.c a.d
    """.split()
)

_CLOSERS = "\"')]}>\u2019\u201d\u00bb"  # set aside when looking for the sentence-ending mark
_NUMBER = re.compile(r"^-?[.,]?\d[\d,.-]*$")
_CHUNK = re.compile(r"\S+")


def _ends_sentence(chunk: str, following: str) -> bool:
    """Whether ``chunk`` (one whitespace-separated piece of text) ends a sentence when ``following``
    (the next chunk) comes after it."""
    core = chunk.rstrip(_CLOSERS)
    if not core or core[-1] not in ".?!":
        return False
    if core[-1] in "?!":
        return True
    if core.endswith(".."):  # an ellipsis: the sentence goes on
        return False
    word = core[:-1].lstrip("\"'([{<\u2018\u201c\u00ab`")
    if len(word) == 1 and word.isalpha():  # an initial
        return False
    if word.lower() in ABBREVIATIONS or word.lower().rsplit("-", 1)[-1] in ABBREVIATIONS:
        return False
    if _NUMBER.match(word) and following[:1].islower():
        return False
    return True


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences by the rule of the module docstring (whitespace at the cuts
    dropped).

    >>> sentences("It rained. Mr. Lee stayed in the U.S. all day. Why? Who knows...")
    ['It rained.', 'Mr. Lee stayed in the U.S. all day.', 'Why?', 'Who knows...']
    """
    chunks = list(_CHUNK.finditer(text))
    out, start = [], None
    for i, m in enumerate(chunks):
        if start is None:
            start = m.start()
        if i + 1 < len(chunks) and _ends_sentence(m.group(), chunks[i + 1].group()):
            out.append(text[start : m.end()])
            start = None
    if start is not None:
        out.append(text[start : chunks[-1].end()])
    return out


# The Penn Treebank rules, in the order they apply; each is (pattern, replacement).
_OPENING_QUOTES = [
    (re.compile("([\u00ab\u201c\u2018\u201e]|`+)"), r" \1 "),  # typographic opening quotes, backticks
    (re.compile(r'^"'), "``"),  # a double quote starting the sentence opens
    (re.compile("(``)"), r" \1 "),
    (re.compile(r"""([ (\[{<])("|'')"""), r"\1 `` "),  # ... and after a space or an opening bracket
    (re.compile(r"(?i)(')(?!re|ve|ll|m|t|s|d|n)(\w)\b"), r"\1 \2"),  # 'quoted words, not clitics
]
_PUNCTUATION = [
    # the sentence's final period (before closing quotes/brackets), typographic closers included
    (re.compile(r"""([^.])(\.)([\])}>"'\u00bb\u201d\u2019 ]*)\s*$"""), r"\1 \2 \3 "),
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),  # comma, colon before a non-digit
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}"), r" \g<0> "),  # ellipses
    (re.compile(r"[;@#$%&]"), r" \g<0> "),
    (re.compile(r"""([^.])(\.)([\])}>"']*)\s*$"""), r"\1 \2\3 "),  # the final period, once more
    (re.compile(r"[?!]"), r" \g<0> "),
    (re.compile(r"([^'])' "), r"\1 ' "),  # a closing single quote
    (re.compile(r"[*]"), r" \g<0> "),
]
_BRACKETS = (re.compile(r"[\]\[(){}<>]"), r" \g<0> ")
_DASHES = (re.compile(r"--"), r" -- ")
_CLOSING_QUOTES = [
    (re.compile("([\u00bb\u201d\u2019])"), r" \1 "),
    (re.compile(r"''"), " '' "),
    (re.compile(r'"'), " '' "),  # any double quote left closes
    (re.compile(r"\s+"), " "),
    (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),  # clitics 's 'm 'd and a lone '
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
]
_SPLIT_WORDS = [  # whole words the Treebank splits in two
    re.compile(p)
    for p in (
        r"(?i)\b(can)(?#X)(not)\b",
        r"(?i)\b(d)(?#X)('ye)\b",
        r"(?i)\b(gim)(?#X)(me)\b",
        r"(?i)\b(gon)(?#X)(na)\b",
        r"(?i)\b(got)(?#X)(ta)\b",
        r"(?i)\b(lem)(?#X)(me)\b",
        r"(?i)\b(more)(?#X)('n)\b",
        r"(?i)\b(wan)(?#X)(na)(?=\s)",
        r"(?i) ('t)(?#X)(is)\b",
        r"(?i) ('t)(?#X)(was)\b",
    )
]


def treebank_words(sentence: str) -> list[str]:
    """One sentence's words under the Penn Treebank conventions (module docstring).

    >>> sentence = "They can't say \\"no\\" (or 3,000 times): it's 10:30."
    >>> treebank_words(sentence)  # doctest: +NORMALIZE_WHITESPACE
    ['They', 'ca', "n't", 'say', '``', 'no', "''", '(', 'or', '3,000', 'times', ')', ':', 'it',
     "'s", '10:30', '.']
    """
    text = sentence
    for pattern, repl in _OPENING_QUOTES:
        text = pattern.sub(repl, text)
    for pattern, repl in _PUNCTUATION:
        text = pattern.sub(repl, text)
    for pattern, repl in (_BRACKETS, _DASHES):
        text = pattern.sub(repl, text)
    text = f" {text} "
    for pattern, repl in _CLOSING_QUOTES:
        text = pattern.sub(repl, text)
    for pattern in _SPLIT_WORDS:
        text = pattern.sub(r" \1 \2 ", text)
    return text.split()


def word_tokenize(text: str) -> list[str]:
    """The words of ``text`` as the reference's ``nltk.word_tokenize`` gives them: sentences
    (:func:`sentences`), then each sentence's Treebank words (:func:`treebank_words`)."""
    return [w for s in sentences(text) for w in treebank_words(s)]
