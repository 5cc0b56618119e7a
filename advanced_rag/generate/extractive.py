"""The offline default generator: answers by quoting the hits' most relevant sentences.

Nothing is generated: every character of an answer, apart from the citation markers ``[n]``
and the single spaces joining sentences, is copied from a hit. That makes it deterministic,
free, and unable to hallucinate — and also unable to paraphrase, combine or reason. It is the
baseline every LLM generator is measured against, and the answer when no LLM is configured.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..protocols import Embedder
from ..scoring.claims import split_sentences
from ..types import Hit
from .base import REFUSAL, Citation, Generation

__all__ = ["LEXICAL_WEIGHT", "SEMANTIC_WEIGHT", "ExtractiveGenerator", "content_words",
           "is_heading"]

SEMANTIC_WEIGHT = 0.75
"""Weight of the embedding cosine in a sentence's score."""
LEXICAL_WEIGHT = 0.25
"""Weight of the question-word overlap in a sentence's score."""

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves shall may might must
tell explain describe please
""".split())


def content_words(text: str) -> frozenset[str]:
    """The lower-cased words of ``text`` that carry content, with a plural ``s`` stripped.

    Stopwords and one-character tokens are dropped; a trailing ``s`` is removed from words of
    four or more letters not ending in ``ss`` (``loans`` → ``loan``), a deliberately crude stem.

    Example::

        >>> sorted(content_words("What are the loan limits for new customers?"))
        ['customer', 'limit', 'loan', 'new']
    """
    words: set[str] = set()
    for raw in _WORD.findall(text):
        word = raw.lower().replace("’", "'")
        if len(word) < 2 or word in _STOPWORDS:
            continue
        if len(word) >= 4 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        words.add(word)
    return frozenset(words)


@dataclass(frozen=True, slots=True)
class _Candidate:
    rank: int      # index of the hit in the retrieval order
    start: int     # span of the sentence in hit.text
    text: str      # hit.text[start:end], verbatim


def is_heading(sentence: str) -> bool:
    """A title or section heading rather than a statement: a Markdown ``#`` line, or a short
    line (under 6 words) without closing punctuation, like the title every chunk is headed by.

    Example::

        >>> is_heading("Credit Approval Authority Limits"), is_heading("- Core banking: RTO 4 hours.")
        (True, False)
    """
    text = sentence.strip()
    if text.startswith("#"):
        return True
    return len(text.split()) < 6 and not text.endswith((".", "!", "?", ";", ":"))


def _candidates(hits: Sequence[Hit]) -> list[_Candidate]:
    """Every sentence of every hit, in hit then position order; headings and verbatim repeats
    dropped (overlapping chunks repeat sentences; the first, best-ranked occurrence is kept)."""
    seen: set[str] = set()
    out: list[_Candidate] = []
    for rank, hit in enumerate(hits):
        for start, end in split_sentences(hit.text):
            raw = hit.text[start:end]
            stripped = raw.strip()
            if not stripped or not any(ch.isalnum() for ch in stripped) or is_heading(stripped):
                continue
            key = " ".join(stripped.split())
            if key in seen:
                continue
            seen.add(key)
            out.append(_Candidate(rank, start + (len(raw) - len(raw.lstrip())), stripped))
    return out


class ExtractiveGenerator:
    """Quotes the sentences of the hits that best answer the question, each with its citation.

    Each hit's text is split into sentences (:func:`advanced_rag.scoring.claims.split_sentences`).
    Every sentence is scored against the question as::

        score = 0.75 * cos(e(question), e(sentence)) + 0.25 * |Q ∩ S| / |Q|

    where ``e`` are the embedder's L2-normalised vectors (``embed_query`` for the question,
    one ``embed_documents`` call for all sentences), and ``Q``, ``S`` are the
    :func:`content_words` of question and sentence (the overlap term is 0 when ``Q`` is
    empty). Scores are rounded to 6 decimals so that float noise cannot reorder ties.

    The best ``max_sentences`` sentences with ``score >= min_similarity`` are kept (ties: better
    hit rank, then earlier position), put back in hit-rank then position order, and joined with
    single spaces, each followed by ``[n]``: ``n`` numbers the distinct hits cited, in order of
    first use, from 1. A sentence repeated verbatim in several hits (overlapping chunks) counts
    once, for the best-ranked hit. When no sentence reaches the threshold, or there are no
    hits, the answer is :data:`~advanced_rag.generate.base.REFUSAL` with ``refused=True``.

    ``model`` of the result is ``"extractive:<embedder name>"``; token counts are ``None``.

    Example::

        generator = ExtractiveGenerator(SentenceTransformerEmbedder(), max_sentences=2)
        generation = await generator.generate("Who needs enhanced due diligence?", hits)
        generation.text
        # 'Customers with a risk score above 0.7 need enhanced due diligence. [1]'
    """

    def __init__(self, embedder: Embedder, *, max_sentences: int = 3,
                 min_similarity: float = 0.35) -> None:
        if max_sentences < 1:
            raise ConfigError(f"must be at least 1, got {max_sentences}",
                              key="generator.max_sentences")
        if not -1.0 <= min_similarity <= 1.0:
            raise ConfigError(f"must be within [-1, 1], got {min_similarity}",
                              key="generator.min_similarity")
        self._embedder = embedder
        self._max_sentences = max_sentences
        self._min_similarity = min_similarity
        self._model = f"extractive:{embedder.identity.name}"

    @property
    def name(self) -> str:
        return "extractive"

    def __repr__(self) -> str:
        return (f"ExtractiveGenerator(model={self._model!r}, max_sentences={self._max_sentences}, "
                f"min_similarity={self._min_similarity})")

    async def generate(self, question: str, hits: Sequence[Hit]) -> Generation:
        started = time.perf_counter()
        candidates = _candidates(hits)
        chosen: list[_Candidate] = []
        if candidates:
            scores = await self._scores(question, candidates)
            ranked = sorted(
                (i for i, s in enumerate(scores) if s >= self._min_similarity),
                key=lambda i: (-scores[i], candidates[i].rank, candidates[i].start),
            )
            chosen = sorted((candidates[i] for i in ranked[:self._max_sentences]),
                            key=lambda c: (c.rank, c.start))
        if not chosen:
            return Generation(REFUSAL, (), self._model, True, None, None,
                              (time.perf_counter() - started) * 1000.0)
        numbers: dict[int, int] = {}
        parts: list[str] = []
        for candidate in chosen:
            number = numbers.setdefault(candidate.rank, len(numbers) + 1)
            parts.append(f"{candidate.text} [{number}]")
        citations = tuple(
            Citation(number, hits[rank].chunk_id, hits[rank].doc_id, hits[rank].doc_version)
            for rank, number in numbers.items()
        )
        return Generation(" ".join(parts), citations, self._model, False, None, None,
                          (time.perf_counter() - started) * 1000.0)

    async def _scores(self, question: str, candidates: Sequence[_Candidate]) -> list[float]:
        query = np.asarray(await self._embedder.embed_query(question), dtype=np.float64)
        vectors = np.asarray(await self._embedder.embed_documents([c.text for c in candidates]),
                             dtype=np.float64)
        cosines = vectors @ query
        wanted = content_words(question)
        scores = []
        for candidate, cosine in zip(candidates, cosines, strict=True):
            overlap = len(wanted & content_words(candidate.text)) / len(wanted) if wanted else 0.0
            scores.append(round(SEMANTIC_WEIGHT * float(cosine) + LEXICAL_WEIGHT * overlap, 6))
        return scores
