from __future__ import annotations

import pytest

from advanced_rag.config import Bm25Settings
from advanced_rag.errors import DocumentError
from advanced_rag.ingestion import (
    VersionPlan,
    chunk_header,
    indexed_text,
    plan_version,
    validate_document,
)
from advanced_rag.protocols import StoredVersion
from advanced_rag.store.milvus import (
    ENGLISH_STOP_WORDS,
    analyzer_params,
    bm25_score,
    parse_version,
    server_info,
    summarize_versions,
)
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
    embedded = server_info("v2.3.5-lite")  # the PyPI `milvus` package: a real 2.3 server
    assert not embedded.is_lite and not embedded.supports_bm25 and not embedded.reliable_upsert
    assert server_info("v2.4.0").reliable_upsert and server_info("milvus_lite-3.2.2").reliable_upsert


def test_bm25_is_positive_on_both_backends() -> None:
    assert bm25_score(-3.5, is_lite=True) == 3.5
    assert bm25_score(3.5, is_lite=False) == 3.5


def _chunk(text: str) -> Chunk:
    return Chunk("id", "d", 1, 0, text, 0, len(text), 3)


def test_analyzer_spells_out_stop_words() -> None:
    # Milvus Lite would take the server's "_english_" shorthand as one literal stop word
    default = analyzer_params(Bm25Settings())
    assert default["tokenizer"] == "standard" and default["filter"][0] == "lowercase"
    stop = default["filter"][1]
    assert stop["type"] == "stop" and "the" in stop["stop_words"] and "_english_" not in stop[
        "stop_words"]
    assert len(stop["stop_words"]) == len(ENGLISH_STOP_WORDS) == 33
    assert analyzer_params(Bm25Settings(stop_words="none")) == {
        "tokenizer": "standard", "filter": ["lowercase"]}
    assert analyzer_params(Bm25Settings(stop_words=["le", "la"]))["filter"][1][
        "stop_words"] == ["le", "la"]
    assert analyzer_params(Bm25Settings(analyzer="jieba")) == {"type": "jieba"}


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


def _rows(doc: str, version: int, stored: int, count: int | None, content: str = "h"
          ) -> list[dict[str, object]]:
    row: dict[str, object] = {"doc_id": doc, "doc_version": version, "content_hash": content}
    if count is not None:
        row["chunk_count"] = count
    return [dict(row) for _ in range(stored)]


def test_summarize_versions_counts_rows_against_chunk_count() -> None:
    rows = (_rows("a", 1, 2, 2, "h1") + _rows("a", 2, 3, 3, "h2") + _rows("a", 3, 1, 4, "h3")
            + _rows("b", 5, 1, 2) + _rows("c", 1, 3, 2))  # c: more rows than chunks: not whole
    summary = summarize_versions(rows)
    assert summary["a"] == StoredVersion("a", 2, "h2", stale=True, partial=(3,))
    assert summary["b"] == StoredVersion("b", 0, "", partial=(5,))  # nothing complete
    assert summary["c"] == StoredVersion("c", 0, "", partial=(1,))
    assert summary["a"].highest == 3 and summary["b"].highest == 5 and not summary["b"].complete
    # a partial version below the latest complete one is reported too
    below = summarize_versions(_rows("d", 1, 1, 2) + _rows("d", 2, 1, 1, "h2"))
    assert below["d"] == StoredVersion("d", 2, "h2", stale=False, partial=(1,))
    # legacy rows (no chunk_count field) always count as complete
    legacy = summarize_versions(_rows("e", 1, 1, None, "h1") + _rows("e", 2, 5, None, "h2"))
    assert legacy["e"] == StoredVersion("e", 2, "h2", stale=True)
    assert summarize_versions([]) == {}


def test_plan_version() -> None:
    assert plan_version(None, "h") == VersionPlan(1)
    same = StoredVersion("d", 2, "h")
    assert plan_version(same, "h") == VersionPlan(2, unchanged=True) and not VersionPlan(2).cleans
    # unchanged, with leftovers on both sides: delete below and the exact partials above
    leftovers = StoredVersion("d", 3, "h", stale=True, partial=(4, 6))
    assert plan_version(leftovers, "h") == VersionPlan(3, unchanged=True, clean_below=3,
                                                       clean_versions=(4, 6))
    assert plan_version(StoredVersion("d", 3, "h", partial=(1,)), "h").clean_below == 3
    # changed: above every stored version, partial ones included; the rest goes after the write
    assert plan_version(leftovers, "new") == VersionPlan(7, is_update=True, clean_below=7)
    # only a partial write is stored: a NEW document, its leftovers removed after the write
    assert plan_version(StoredVersion("d", 0, "", partial=(1,)), "h") == VersionPlan(
        2, clean_below=2)
