"""Hand-crafted faithfulness features of a claim against context passages.

Every function here is pure: text in, floats out, with sentence embeddings computed by the
caller (one batch per answer, see :class:`~advanced_rag.scoring.feature_judge.FeatureJudge`).
No feature is ever NaN; the judge returns ``None`` instead of scoring empty inputs.

Claim-level features (:data:`CLAIM_FEATURES`), each against all context sentences:

``num_missing`` / ``num_missing_frac``
    Whether / what fraction of the numbers in the claim appear nowhere in the contexts.
    Numbers are normalised: ``1,250,000`` = ``1.25 million`` = ``1.25m``; ``5%`` = ``5 percent``;
    ordinals and decades (``19th``, ``1990s``) and the words two..twelve count; a number matches
    within one unit of its last written digit (``over $181 million`` matches ``181,674,817``).
``ent_missing`` / ``ent_missing_frac``
    Whether / what fraction of the capitalised names (and acronyms) of the claim never occur
    in the contexts (case-insensitive); a sentence-initial capital counts only when the word
    is not a stop word.
``cov_best``
    Content-word coverage (light suffix stemming) of the claim by its best context sentence.
``cov_context``
    Content-word coverage of the claim by all contexts together (claims fuse sentences).
``lcs_best``
    Longest common token subsequence with the best of the 3 closest sentences / claim tokens.
``bm25_best``
    Best BM25 score (k1 1.2, b 0.75, over the context sentences as the corpus) of the claim,
    divided by the summed IDF of its terms: ≈ an IDF-weighted coverage in [0, ~1].
``cos_max``
    Highest MiniLM cosine between the claim and a context sentence.
``neg_mismatch``
    1 when exactly one of claim / best sentence carries a negation cue (not, no, never, n't ...).
``antonym_mismatch``
    1 when the claim uses a word whose antonym (:data:`ANTONYMS`) is in the best sentence and
    the word itself is not.
``quant_change``
    1 when the claim adds an absolute quantifier (all, always, never, only ...) the best
    sentence lacks, or drops a hedge (some, may, might, often ...) the best sentence has.
``novel_bigram_frac``
    Fraction of the claim's word bigrams found nowhere in the contexts.
``log_uncovered``
    log(1 + number of distinct content words of the claim absent from all contexts).
``log_tokens``
    log(1 + number of word tokens of the claim).
``log_context_sentences``
    log(1 + number of context sentences): the same for every claim of an answer; it lets the
    linear model weigh evidence differently for short facts (QA) and whole documents
    (summaries) through the ``*_x_ctx`` products of :data:`ANSWER_FEATURES`.

The *best sentence* of a claim is the context sentence maximising ``cosine + coverage``; it is
the claim's evidence. Answer-level features (:data:`ANSWER_FEATURES`) aggregate claim features
with the direction in which each signals trouble (min of similarities, max of mismatches, and
the mean of both), plus the answer length and claim count (log).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ANSWER_FEATURES", "ANTONYMS", "CLAIM_FEATURES", "ClaimFeatures", "ContextIndex",
    "answer_features", "build_context_index", "claim_features", "content_words", "extract_entities",
    "STOPWORDS", "WORD", "extract_numbers", "lcs_length", "split_sentences", "stem_word",
    "word_tokens",
]

CLAIM_FEATURES: tuple[str, ...] = (
    "num_missing", "num_missing_frac", "ent_missing", "ent_missing_frac", "cov_best",
    "cov_context", "lcs_best", "bm25_best", "cos_max", "neg_mismatch", "antonym_mismatch",
    "quant_change", "novel_bigram_frac", "log_uncovered", "log_tokens", "log_context_sentences",
)
_LOW_IS_BAD = ("cov_best", "cov_context", "lcs_best", "bm25_best", "cos_max")
_HIGH_IS_BAD = ("num_missing", "num_missing_frac", "ent_missing", "ent_missing_frac",
                "neg_mismatch", "antonym_mismatch", "quant_change", "novel_bigram_frac", "log_uncovered")
LOW_IS_BAD: tuple[str, ...] = _LOW_IS_BAD
HIGH_IS_BAD: tuple[str, ...] = _HIGH_IS_BAD
ANSWER_FEATURES: tuple[str, ...] = (
    *(f"min_{n}" for n in _LOW_IS_BAD), *(f"mean_{n}" for n in _LOW_IS_BAD),
    *(f"max_{n}" for n in _HIGH_IS_BAD), *(f"mean_{n}" for n in _HIGH_IS_BAD),
    "log_answer_tokens", "log_claims", "log_context_sentences",
    *(f"{name}_x_ctx" for name in ("mean_cov_context", "mean_log_uncovered", "mean_novel_bigram_frac",
                                   "mean_bm25_best", "mean_cos_max", "min_cos_max", "mean_num_missing",
                                   "mean_ent_missing_frac")),
)

STOPWORDS = frozenset("""a an the and or but if then than that this these those there their they them
he she it its his her him we us our you your i me my mine of to in on at by for with from as into onto
about over under up down out off is are was were be been being am do does did done have has had having
will would shall should can could may might must not no nor so too very just also only both each
few more most other some such own same all any who whom whose which what when where why how here
s t don doesn didn isn wasn weren aren won wouldn shouldn couldn hasn haven hadn while after before
during because since until unless although though however yet again further once said says""".split())
NEGATIONS = frozenset("not no never n't none nobody nothing neither nor without cannot".split())
ABSOLUTES = frozenset("all always never none only every entire entirely completely must".split())
HEDGES = frozenset("some may might often sometimes could possibly likely several many".split())
_PAIRS = ("increase decrease", "increased decreased", "rise fall", "rose fell", "more less",
          "higher lower", "above below", "before after", "approved rejected", "allowed prohibited",
          "accept reject", "accepted rejected", "win lose", "won lost", "gain loss", "larger smaller",
          "largest smallest", "first last", "maximum minimum", "earlier later", "male female",
          "north south", "east west", "success failure", "legal illegal", "guilty innocent",
          "positive negative", "open closed", "buy sell", "bought sold", "older younger",
          "oldest youngest", "true false", "include exclude", "permitted forbidden", "strong weak")


def _antonyms(pairs: Sequence[str]) -> dict[str, frozenset[str]]:
    table: dict[str, frozenset[str]] = {}
    for pair in pairs:
        a, b = pair.split()
        table[a] = table.get(a, frozenset()) | {b}
        table[b] = table.get(b, frozenset()) | {a}
    return table


ANTONYMS: Mapping[str, frozenset[str]] = _antonyms(_PAIRS)

WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_SENT_END = re.compile(r"""(?<=[.!?])["'”’)\]]*\s+(?=["'“(\[]?[A-Z0-9])"""
                       r"|(?<=[a-z]{2}[.!?])(?=[A-Z][a-z])|\n\s*\n?")
_ABBREV = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Lt|Col|Gen|Sen|Rep|Inc|Ltd|Co|No|vs|U\.S|e\.g|i\.e)"
                     r"|\b[A-Z])\.$")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?:st|nd|rd|th|s)?"
                     r"(?:\s*(%|percent\b|per cent\b|thousand\b|million\b|billion\b|trillion\b"
                     r"|bn\b|m\b|k\b))?")
_NUMBER_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split()) if i >= 2}
_SCALE = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "billion": 1e9, "bn": 1e9,
          "trillion": 1e12}


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` of ``text`` (whitespace-trimmed, never empty).

    Splits after ``.!?`` before a capital or digit, on blank lines, and on a glued
    ``century.First`` (common in HaluEval knowledge); common abbreviations do not split.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENT_END.finditer(text):
        if match.start() == match.end() == start or _ABBREV.search(text[start:match.start()]):
            continue
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    out: list[tuple[int, int]] = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s and WORD.search(text, s, e):
            out.append((s, e))
    return out


def word_tokens(text: str) -> list[str]:
    """Lower-cased word tokens (``n't`` kept as a separate negation token)."""
    tokens: list[str] = []
    for raw in WORD.findall(text):
        low = raw.lower().replace("’", "'")
        if low.endswith("n't"):
            tokens.extend((low[:-3], "n't"))
        else:
            tokens.append(low.split("'")[0] if "'" in low else low)
    return tokens


def stem_word(word: str) -> str:
    for suffix in ("ing", "ies", "es", "ed", "ly", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def content_words(tokens: Sequence[str]) -> list[str]:
    """Stemmed tokens that are not stop words."""
    return [stem_word(t) for t in tokens if t not in STOPWORDS and t != "n't"]


def extract_numbers(text: str) -> list[tuple[float, float]]:
    """``(value, tolerance)`` of every number in ``text``; the tolerance is one unit of the
    last written digit, times the scale word (``1.25 million`` → (1250000, 10000))."""
    found: list[tuple[float, float]] = []
    for match in _NUMBER.finditer(text):
        whole, frac, unit = match.group(1), match.group(2) or "", (match.group(3) or "").lower()
        value = float(whole.replace(",", "") + frac)
        step = 10.0 ** -(len(frac) - 1) if frac else 1.0
        scale = _SCALE.get(unit, 1.0)
        found.append((value * scale, step * scale))
    for token in word_tokens(text):
        if token in _NUMBER_WORDS:
            found.append((float(_NUMBER_WORDS[token]), 1.0))
    return found


def _number_present(value: float, tolerance: float, pool: Sequence[float]) -> bool:
    return any(abs(value - c) < tolerance * 0.999 + 1e-9 or value == c for c in pool)


def extract_entities(text: str) -> list[str]:
    """Lower-cased capitalised names and acronyms of ``text`` (not stop words, not numbers)."""
    entities: list[str] = []
    for s, e in split_sentences(text):
        for i, match in enumerate(WORD.finditer(text, s, e)):
            word = match.group(0)
            if not word[0].isupper():
                continue
            low = word_tokens(word)[0] if word_tokens(word) else word.lower()
            if low in STOPWORDS or low in NEGATIONS or (i == 0 and len(word) < 3):
                continue
            entities.append(low)
    return entities


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a)·len(b)))."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class ContextIndex:
    """The context sentences of one judgement, with everything the features need.

    ``sentences[i] = (context_index, start, end, text)``; ``embeddings`` is an L2-normalised
    ``(len(sentences), d)`` matrix.
    """

    sentences: tuple[tuple[int, int, int, str], ...]
    embeddings: np.ndarray
    tokens: tuple[tuple[str, ...], ...]
    contents: tuple[frozenset[str], ...]
    numbers: tuple[float, ...]
    all_tokens: frozenset[str]
    all_contents: frozenset[str]
    bigrams: frozenset[tuple[str, str]]
    idf: Mapping[str, float]
    avg_len: float
    term_freqs: tuple[Counter[str], ...] = field(default_factory=tuple)


def context_sentences(contexts: Sequence[str]) -> list[tuple[int, int, int, str]]:
    """All sentences of all contexts as ``(context_index, start, end, text)``."""
    return [(ci, s, e, ctx[s:e]) for ci, ctx in enumerate(contexts) for s, e in split_sentences(ctx)]


def build_context_index(contexts: Sequence[str], embeddings: np.ndarray) -> ContextIndex:
    """Index ``contexts``; ``embeddings`` are those of :func:`context_sentences` (same order)."""
    sentences = tuple(context_sentences(contexts))
    tokens = tuple(tuple(word_tokens(s[3])) for s in sentences)
    words = tuple(content_words(t) for t in tokens)
    contents = tuple(frozenset(w) for w in words)
    bm25_terms = tuple(Counter(w) for w in words)
    df: Counter[str] = Counter()
    for tf in bm25_terms:
        df.update(tf.keys())
    n = len(sentences)
    idf = {term: math.log(1.0 + (n - d + 0.5) / (d + 0.5)) for term, d in df.items()}
    numbers = tuple(v for ctx in contexts for v, _ in extract_numbers(ctx))
    all_tokens = frozenset(t for ts in tokens for t in ts)
    bigrams = frozenset(bg for ts in tokens for bg in zip(ts, ts[1:], strict=False))
    avg_len = sum(sum(tf.values()) for tf in bm25_terms) / n if n else 0.0
    return ContextIndex(sentences, np.asarray(embeddings, dtype=np.float32).reshape(n, -1) if n
                        else np.zeros((0, 1), dtype=np.float32), tokens, contents, numbers,
                        all_tokens, frozenset().union(*contents) if contents else frozenset(),
                        bigrams, idf, avg_len, bm25_terms)


@dataclass(frozen=True)
class ClaimFeatures:
    """Features of one claim (names in :data:`CLAIM_FEATURES`), its best sentence (index into
    ``ContextIndex.sentences``, -1 when there is none) and whether a contradiction cue fired."""

    values: Mapping[str, float]
    best: int
    contradiction_cue: bool


def _bm25(query: Sequence[str], index: ContextIndex, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    scores = np.zeros(len(index.sentences), dtype=np.float64)
    max_idf = math.log(1.0 + (len(index.sentences) + 0.5) / 0.5)
    norm = sum(index.idf.get(q, max_idf) for q in set(query))
    if norm <= 0:
        return scores
    for i, tf in enumerate(index.term_freqs):
        length = sum(tf.values())
        score = 0.0
        for q in set(query):
            f = tf.get(q, 0)
            if f:
                saturation = f + k1 * (1 - b + b * length / max(index.avg_len, 1e-9))
                score += index.idf[q] * f * (k1 + 1) / saturation
        scores[i] = score / norm
    return scores


def claim_features(text: str, embedding: np.ndarray, index: ContextIndex,
                   close_cosine: float = 0.6) -> ClaimFeatures:
    """Features of claim ``text`` (embedding ``embedding``) against ``index``.

    ``contradiction_cue`` is True when a number, negation or antonym mismatch fires on a best
    sentence with cosine ≥ ``close_cosine`` (the judge's *contradicted* rule).
    """
    tokens = word_tokens(text)
    content = content_words(tokens)
    cset = set(content)
    numbers = extract_numbers(text)
    missing_numbers = sum(not _number_present(v, tol, index.numbers) for v, tol in numbers)
    entities = set(extract_entities(text))
    missing_entities = sum(e not in index.all_tokens for e in entities)
    bigrams = list(zip(tokens, tokens[1:], strict=False))
    novel = sum(bg not in index.bigrams for bg in bigrams) / len(bigrams) if bigrams else 0.0
    values: dict[str, float] = {
        "num_missing": float(missing_numbers > 0),
        "num_missing_frac": missing_numbers / len(numbers) if numbers else 0.0,
        "ent_missing": float(missing_entities > 0),
        "ent_missing_frac": missing_entities / len(entities) if entities else 0.0,
        "cov_context": len(cset & index.all_contents) / len(cset) if cset else 1.0,
        "novel_bigram_frac": novel, "log_tokens": math.log1p(len(tokens)),
        "log_uncovered": math.log1p(len(cset - index.all_contents)),
        "log_context_sentences": math.log1p(len(index.sentences)),
        "cov_best": 0.0, "lcs_best": 0.0, "bm25_best": 0.0, "cos_max": 0.0,
        "neg_mismatch": 0.0, "antonym_mismatch": 0.0, "quant_change": 0.0,
    }
    if not index.sentences:
        return ClaimFeatures(values, -1, False)
    cosines = np.clip(index.embeddings @ np.asarray(embedding, dtype=np.float32), -1.0, 1.0)
    coverage = np.array([len(cset & c) / len(cset) if cset else 0.0 for c in index.contents])
    best = int(np.argmax(cosines + coverage))
    top = np.argsort(-cosines, kind="stable")[:3].tolist()
    lcs = max(lcs_length(tokens, index.tokens[i]) for i in {*top, best}) / max(len(tokens), 1)
    best_tokens = set(index.tokens[best])
    claim_tokens = set(tokens)
    neg = float(bool(claim_tokens & NEGATIONS) != bool(best_tokens & NEGATIONS))
    antonym = float(any(w not in best_tokens and ANTONYMS[w] & best_tokens
                        for w in claim_tokens if w in ANTONYMS))
    quant = float(bool((claim_tokens & ABSOLUTES) - best_tokens)
                  or bool((best_tokens & HEDGES) - claim_tokens))
    values.update(cov_best=float(coverage.max()), lcs_best=float(lcs),
                  bm25_best=float(_bm25(content, index).max()), cos_max=float(cosines.max()),
                  neg_mismatch=neg, antonym_mismatch=antonym, quant_change=quant)
    number_clash = missing_numbers > 0 and bool(extract_numbers(index.sentences[best][3]))
    cue = float(cosines[best]) >= close_cosine and (number_clash or neg > 0 or antonym > 0)
    return ClaimFeatures({k: float(v) for k, v in values.items()}, best, cue)


def answer_features(claims: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Aggregate claim features into :data:`ANSWER_FEATURES` (empty input: empty dict)."""
    if not claims:
        return {}
    out: dict[str, float] = {}
    for name in _LOW_IS_BAD:
        column = [c[name] for c in claims]
        out[f"min_{name}"] = min(column)
        out[f"mean_{name}"] = sum(column) / len(column)
    for name in _HIGH_IS_BAD:
        column = [c[name] for c in claims]
        out[f"max_{name}"] = max(column)
        out[f"mean_{name}"] = sum(column) / len(column)
    total_tokens = sum(math.expm1(c["log_tokens"]) for c in claims)
    out["log_answer_tokens"] = math.log1p(total_tokens)
    out["log_claims"] = math.log(len(claims))
    out["log_context_sentences"] = claims[0]["log_context_sentences"]
    for name in ANSWER_FEATURES:
        if name.endswith("_x_ctx"):
            out[name] = out[name[: -len("_x_ctx")]] * out["log_context_sentences"]
    return {name: out[name] for name in ANSWER_FEATURES}
