from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advanced_rag.chunking import chunk_id, chunk_text


class WordPieceLike:
    """Counts words and punctuation marks, as BERT's pre-tokenizer splits them."""

    pattern = re.compile(r"\w+|[^\w\s]")

    def count_tokens(self, text: str) -> int:
        return len(self.pattern.findall(text))


class CharCounter:
    """One token per non-space character: forces word and character splits."""

    def count_tokens(self, text: str) -> int:
        return sum(1 for ch in text if not ch.isspace())


sentences = st.lists(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0,
            max_size=80).map(lambda s: s + st_choice_end(s)),
    min_size=1, max_size=30).map(" ".join)


def st_choice_end(s: str) -> str:
    return "." if len(s) % 3 else "?\n\n"


def _check(text: str, counter: object, max_tokens: int, overlap: int, min_tokens: int) -> None:
    chunks = chunk_text("doc-1", 3, text, counter, max_tokens=max_tokens,  # type: ignore[arg-type]
                        overlap_tokens=overlap, min_tokens=min_tokens)
    if not text:
        assert chunks == []
        return
    covered = [False] * len(text)
    for position, chunk in enumerate(chunks):
        assert chunk.position == position
        assert chunk.text == text[chunk.start:chunk.end]
        assert counter.count_tokens(chunk.text) <= max_tokens  # type: ignore[attr-defined]
        assert chunk.token_count == counter.count_tokens(chunk.text)  # type: ignore[attr-defined]
        for i in range(chunk.start, chunk.end):
            covered[i] = True
    assert all(covered), "every character of the input lies in a chunk"
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    if overlap == 0:
        for left, right in zip(chunks, chunks[1:], strict=False):
            assert left.end == right.start
    again = chunk_text("doc-1", 3, text, counter, max_tokens=max_tokens,  # type: ignore[arg-type]
                       overlap_tokens=overlap, min_tokens=min_tokens)
    assert [c.chunk_id for c in again] == [c.chunk_id for c in chunks]
    assert len({c.chunk_id for c in chunks}) == len(chunks)


@settings(max_examples=150, deadline=None)
@given(text=sentences, max_tokens=st.integers(4, 60), overlap=st.integers(0, 10),
       min_tokens=st.integers(0, 8))
def test_properties_wordpiece_like(text: str, max_tokens: int, overlap: int, min_tokens: int) -> None:
    _check(text, WordPieceLike(), max_tokens, min(overlap, max_tokens - 1), min(min_tokens, max_tokens))


@settings(max_examples=100, deadline=None)
@given(text=st.text(min_size=0, max_size=400), max_tokens=st.integers(1, 25))
def test_properties_with_unbreakable_words(text: str, max_tokens: int) -> None:
    _check(text, CharCounter(), max_tokens, 0, 0)


def test_sentence_boundaries_are_respected() -> None:
    text = "Alpha beta gamma. Delta epsilon zeta. Eta theta iota."
    chunks = chunk_text("d", 1, text, WordPieceLike(), max_tokens=8)
    assert [c.text.strip() for c in chunks] == [
        "Alpha beta gamma. Delta epsilon zeta.", "Eta theta iota."]


def test_overlap_repeats_trailing_sentences() -> None:
    text = "One two three. Four five six. Seven eight nine. Ten eleven twelve."
    chunks = chunk_text("d", 1, text, WordPieceLike(), max_tokens=8, overlap_tokens=4)
    assert chunks[1].text.startswith("Four five six.")
    assert chunks[0].text.endswith("Four five six. ")


def test_small_tail_is_merged_when_it_fits() -> None:
    text = "A b c d e. F."
    assert len(chunk_text("d", 1, text, WordPieceLike(), max_tokens=6, min_tokens=0)) == 2
    assert len(chunk_text("d", 1, text, WordPieceLike(), max_tokens=8, min_tokens=3)) == 1


def test_ids_depend_on_doc_version_position_and_text() -> None:
    base = chunk_id("d", 1, 0, "text")
    assert base == chunk_id("d", 1, 0, "text") and len(base) == 32
    assert len({base, chunk_id("e", 1, 0, "text"), chunk_id("d", 2, 0, "text"),
                chunk_id("d", 1, 1, "text"), chunk_id("d", 1, 0, "text!"),
                chunk_id("d", 1, 0, "text", "bank-a"), chunk_id("d", 1, 0, "text", "bank-b")}) == 7


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        chunk_text("d", 1, "x", WordPieceLike(), max_tokens=0)
    with pytest.raises(ValueError):
        chunk_text("d", 1, "x", WordPieceLike(), max_tokens=5, overlap_tokens=5)
