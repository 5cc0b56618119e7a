from __future__ import annotations

import pytest

from advanced_rag.errors import DocumentError
from advanced_rag.ingestion import chunk_header, indexed_text, validate_document
from advanced_rag.store.milvus import bm25_score, parse_version, server_info
from advanced_rag.types import Chunk, Document


@pytest.mark.parametrize(("raw", "expected"), [
    ("v2.5.4", (2, 5, 4)), ("2.3.5-dev", (2, 3, 5)), ("milvus_lite-3.2.2", (3, 2, 2)),
    ("v2.6", (2, 6, 0)), ("unknown", None)])
def test_parse_version(raw: str, expected: tuple[int, int, int] | None) -> None:
    assert parse_version(raw) == expected


def test_capabilities_by_version() -> None:
    assert server_info("milvus_lite-3.2.2").supports_bm25 and server_info("milvus_lite-3.2.2").is_lite
    assert server_info("v2.5.0").supports_bm25 and not server_info("v2.5.0").is_lite
    assert not server_info("v2.4.9").supports_bm25
    assert not server_info("garbage").supports_bm25


def test_bm25_is_positive_on_both_backends() -> None:
    assert bm25_score(-3.5, is_lite=True) == 3.5
    assert bm25_score(3.5, is_lite=False) == 3.5


def _chunk(text: str) -> Chunk:
    return Chunk("id", "d", 1, 0, text, 0, len(text), 3)


def test_title_header() -> None:
    doc = Document("d", "body", {"title": "  Credit   Policy "})
    header = chunk_header(doc, enabled=True)
    assert header == "Credit Policy\n\n"
    assert chunk_header(doc, enabled=False) == ""
    assert chunk_header(Document("d", "body", {"title": 3}), enabled=True) == ""
    assert indexed_text(header, _chunk("Limits apply.")) == "Credit Policy\n\nLimits apply."
    # a chunk that already opens with its title is not headed twice
    assert indexed_text(header, _chunk("# Credit Policy\n\nText")) == "# Credit Policy\n\nText"
    assert indexed_text("", _chunk("x")) == "x"


def test_validate_document_normalises_and_refuses() -> None:
    doc = validate_document(Document("d", b"caf\xc3\xa9", classification="public"),  # type: ignore[arg-type]
                            max_chars=100)
    assert doc.text == "café" and doc.classification == "public"
    with pytest.raises(DocumentError, match="NUL"):
        validate_document(Document("d", "a\x00b"), max_chars=100)
    with pytest.raises(DocumentError, match="expected a Document"):
        validate_document({"id": "d", "text": "x"}, max_chars=100)
    with pytest.raises(DocumentError, match="at most 512"):
        validate_document(Document("x" * 600, "t"), max_chars=100)
