"""Token-aware, sentence-respecting chunking (pure functions).

A document is cut into *pieces* (sentences; a sentence longer than the token budget is
cut at word boundaries, and a word longer than the budget at characters). Pieces are
contiguous and cover the whole text: each piece owns the whitespace that follows it.
Consecutive pieces are packed into chunks of at most ``max_tokens`` tokens of the
embedder's tokenizer, optionally repeating the last ``overlap_tokens`` worth of pieces at
the start of the next chunk. Chunk ids are stable: derived from (doc id, version,
position, text hash).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .protocols import TokenCounter
from .types import Chunk

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace,
# or at a blank line. Abbreviations occasionally split early; that costs nothing but a boundary.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n\s*\n\s*")
_WORD_END = re.compile(r"\S+\s*")


@dataclass(frozen=True, slots=True)
class _Piece:
    start: int
    end: int
    tokens: int


def chunk_id(doc_id: str, version: int, position: int, text: str, tenant: str = "") -> str:
    """Stable id of a chunk: SHA-256 over (doc id, version, position, text hash, tenant), 32
    hex chars. The tenant is part of it because the id is the collection's primary key: two
    tenants holding the same document id and text must never write the same row."""
    text_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    parts = (doc_id, str(version), str(position), text_hash) + ((tenant,) if tenant else ())
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def _sentence_spans(text: str) -> Iterator[tuple[int, int]]:
    start = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
        if end > start:
            yield start, end
            start = end
    if start < len(text):
        yield start, len(text)


def _split_long(text: str, start: int, end: int, counter: TokenCounter, max_tokens: int
                ) -> Iterator[_Piece]:
    """Cut ``text[start:end]`` into pieces of at most ``max_tokens``: words, then characters."""
    current_start = start
    current_end = start
    for match in _WORD_END.finditer(text, start, end):
        candidate_end = match.end()
        tokens = counter.count_tokens(text[current_start:candidate_end])
        if tokens <= max_tokens:
            current_end = candidate_end
            continue
        if current_end > current_start:
            yield _Piece(current_start, current_end,
                         counter.count_tokens(text[current_start:current_end]))
            current_start = current_end
        # The word alone may still be too long: cut it by characters.
        while counter.count_tokens(text[current_start:candidate_end]) > max_tokens:
            cut = _longest_prefix(text, current_start, candidate_end, counter, max_tokens)
            yield _Piece(current_start, cut, counter.count_tokens(text[current_start:cut]))
            current_start = cut
        current_end = candidate_end
    if current_end < end:
        current_end = end
    if current_end > current_start:
        yield _Piece(current_start, current_end,
                     counter.count_tokens(text[current_start:current_end]))


def _longest_prefix(text: str, start: int, end: int, counter: TokenCounter, max_tokens: int) -> int:
    """Largest ``cut`` in (start, end) with ``text[start:cut]`` within budget (binary search)."""
    low, high = start + 1, end - 1
    best = start + 1
    while low <= high:
        mid = (low + high) // 2
        if counter.count_tokens(text[start:mid]) <= max_tokens:
            best = mid
            low = mid + 1
        else:
            high = mid - 1
    return best


def split_pieces(text: str, counter: TokenCounter, max_tokens: int) -> list[_Piece]:
    """Contiguous pieces covering ``text``, each within ``max_tokens``."""
    pieces: list[_Piece] = []
    for start, end in _sentence_spans(text):
        tokens = counter.count_tokens(text[start:end])
        if tokens <= max_tokens:
            pieces.append(_Piece(start, end, tokens))
        else:
            pieces.extend(_split_long(text, start, end, counter, max_tokens))
    return pieces


def chunk_text(doc_id: str, version: int, text: str, counter: TokenCounter, *,
               max_tokens: int, overlap_tokens: int = 0, min_tokens: int = 0,
               tenant: str = "") -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``max_tokens`` tokens along sentence boundaries.

    Every character of ``text`` lies in at least one chunk (``text[c.start:c.end] == c.text``).
    A trailing chunk smaller than ``min_tokens`` is merged into the previous one when the
    merge still fits the budget.

    Example::

        chunks = chunk_text("kyc-001", 1, text, embedder, max_tokens=200)
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be in [0, max_tokens)")
    pieces = split_pieces(text, counter, max_tokens)
    groups: list[list[_Piece]] = []
    current: list[_Piece] = []
    for piece in pieces:
        if current and _fits(text, current, piece, counter, max_tokens) is False:
            groups.append(current)
            current = _overlap_tail(current, overlap_tokens, text, piece, counter, max_tokens)
        current.append(piece)
    if current:
        groups.append(current)
    if (len(groups) > 1 and min_tokens > 0
            and counter.count_tokens(_span_text(text, groups[-1])) < min_tokens):
        merged = _dedupe([*groups[-2], *groups[-1]])
        if counter.count_tokens(_span_text(text, merged)) <= max_tokens:
            groups[-2:] = [merged]
    chunks: list[Chunk] = []
    for position, group in enumerate(groups):
        start, end = group[0].start, group[-1].end
        body = text[start:end]
        chunks.append(Chunk(
            chunk_id=chunk_id(doc_id, version, position, body, tenant),
            doc_id=doc_id,
            doc_version=version,
            position=position,
            text=body,
            start=start,
            end=end,
            token_count=counter.count_tokens(body),
        ))
    return chunks


def _span_text(text: str, group: list[_Piece]) -> str:
    return text[group[0].start:group[-1].end]


def _dedupe(group: list[_Piece]) -> list[_Piece]:
    seen: set[int] = set()
    out = []
    for piece in group:
        if piece.start not in seen:
            seen.add(piece.start)
            out.append(piece)
    return out


def _fits(text: str, group: list[_Piece], piece: _Piece, counter: TokenCounter,
          max_tokens: int) -> bool:
    # Summed piece counts are exact for WordPiece and close for BPE; confirm on the real span
    # only when the sum is near the budget so long documents stay linear.
    total = sum(p.tokens for p in group) + piece.tokens
    if total > max_tokens + 2:
        return False
    return counter.count_tokens(text[group[0].start:piece.end]) <= max_tokens


def _overlap_tail(group: list[_Piece], overlap_tokens: int, text: str, piece: _Piece,
                  counter: TokenCounter, max_tokens: int) -> list[_Piece]:
    """The last pieces of ``group`` worth at most ``overlap_tokens``, that still fit with ``piece``."""
    if overlap_tokens == 0:
        return []
    tail: list[_Piece] = []
    budget = overlap_tokens
    for prev in reversed(group):
        if prev.tokens > budget:
            break
        tail.insert(0, prev)
        budget -= prev.tokens
    while tail and not _fits(text, tail, piece, counter, max_tokens):
        tail.pop(0)
    return tail
