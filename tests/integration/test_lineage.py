"""Document versions, lineage and explain_request through the real pipeline (Milvus Lite,
packaged MiniLM, SQLite audit store): which version of which document supported an answer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from advanced_rag import AdvancedRAGPipeline, Document
from advanced_rag.config import validate_config
from advanced_rag.errors import InputError
from compliance.audit import AuditEventType

pytestmark = pytest.mark.integration

V1 = Document("loans", "Loans above 250,000 euros are approved by the credit committee.",
              metadata={"title": "Loan approval"}, classification="confidential")
V2 = Document("loans", "Loans above 500,000 euros are approved by the board of directors.",
              metadata={"title": "Loan approval"}, classification="confidential")
OTHER = Document("travel", "Staff travel above 1,000 euros needs a director's approval.",
                 metadata={"title": "Travel"})


def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    return validate_config({
        "data_dir": str(tmp_path), "milvus": {"uri": str(tmp_path / "m.db")},
        "chunking": {"max_tokens": 64, "min_tokens": 4}, "pipeline": {"top_k": 2},
        "retention": {"documents": {"confidential": {"keep_days": 30, "action": "delete"}}}})


async def test_lineage_and_the_versions_behind_each_answer(embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with AdvancedRAGPipeline(config(tmp_path), embedder=embedder) as rag:
        await rag.ingest([V1, OTHER], tenant="bank-a", actor="alice")
        first = await rag.answer("Who approves loans above 250,000 euros?", tenant="bank-a",
                                 request_id="req-1")
        await rag.ingest([V2], tenant="bank-a", actor="bob")
        second = await rag.answer("Who approves large loans?", tenant="bank-a",
                                  request_id="req-2")
        lineage = await rag.get_document_lineage("loans", "bank-a")
        one = await rag.compliance.explain_request("req-1", on=datetime.now(UTC).date())
        two = await rag.compliance.explain_request("req-2")
        with pytest.raises(InputError, match="no audit event"):
            await rag.compliance.explain_request("req-unknown")
    assert [(v.version, v.change_type, v.created_by) for v in lineage] == [
        (1, "create", "alice"), (2, "update", "bob")]
    assert [v.content_sha256 for v in lineage] == [V1.content_hash, V2.content_hash]
    assert lineage[0].chunk_ids and lineage[0].classification == "confidential"
    assert lineage[0].retention_until is not None  # 30 days for confidential documents
    assert (lineage[0].retention_until - lineage[0].created_at).days == 30
    assert lineage[0]["audit_event_id"] is not None  # the seed reads entries as dicts

    loans_1 = [d for d in one.documents if d.doc_id == "loans"]
    assert [(d.version, d.content_sha256) for d in loans_1] == [(1, V1.content_hash)]
    assert loans_1[0].cited == any(c.doc_id == "loans" for c in first.citations)
    assert one.decision == str(first.decision) and one.answer == first.text
    loans_2 = [d for d in two.documents if d.doc_id == "loans"]
    assert [(d.version, d.content_sha256) for d in loans_2] == [(2, V2.content_hash)]
    assert two.tenant == "bank-a" and second.request_id == "req-2"


async def test_delete_and_forget_are_recorded_in_lineage_and_audit(embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with AdvancedRAGPipeline(config(tmp_path), embedder=embedder) as rag:
        await rag.ingest([V1, OTHER], tenant="bank-a")
        await rag.ingest([V2], tenant="bank-a")
        await rag.retrieve("loans", tenant="bank-a", request_id="req-3")
        erased = await rag.forget_document("loans", "bank-a", actor="dpo",
                                           reason="Art. 17 request 2026-88")
        hits, _ = await rag.retrieve("Who approves loans?", tenant="bank-a")
        await rag.delete_documents(["travel"], tenant="bank-a", actor="ops")
        lineage = await rag.get_document_lineage("loans", "bank-a")
        travel = await rag.get_document_lineage("travel")
        [event] = await rag.compliance.query_audit_logs(AuditEventType.ERASURE)
        explained = await rag.compliance.explain_request("req-3")
        sampled = await rag._drift.store.corpus_embeddings(tenant="bank-a")  # type: ignore[union-attr]
    assert all(h.doc_id != "loans" for h in hits)  # its chunks are gone from Milvus
    assert [e.change_type for e in erased] == ["erase"]
    assert [v.change_type for v in lineage] == ["create", "update", "erase"]
    assert all(v.erased_at is not None for v in lineage)
    assert [v.change_type for v in travel] == ["create", "delete"]
    assert event.actor == "dpo" and event.payload is not None
    assert event.payload["doc_id"] == "loans" and event.payload["versions"] == [1, 2]
    assert V2.text not in str(event.payload)  # names what was erased, not its content
    assert any(d.doc_id == "loans" and d.erased for d in explained.documents)
    assert len(sampled) == 0  # the drift corpus sample forgot both documents' embeddings
