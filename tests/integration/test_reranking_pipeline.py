"""The cross-encoder path through the pipeline, configured by path as a user would."""

from __future__ import annotations

from pathlib import Path

import pytest

from advanced_rag import AdvancedRAGPipeline, Document
from advanced_rag.config import validate_config
from compliance.audit import AuditEventType

pytestmark = pytest.mark.integration


async def test_configured_cross_encoder_reranks(cross_encoder_dir: str, embedder,  # type: ignore[no-untyped-def]
                                                milvus_uri: str) -> None:
    config = validate_config({
        "milvus": {"uri": milvus_uri}, "data_dir": str(Path(milvus_uri).parent),
        "pipeline": {"top_k": 6, "rerank_top_k": 2},
        "reranker": {"kind": "cross-encoder", "model": cross_encoder_dir, "max_length": 128},
    })
    docs = [Document(f"d{i}", f"Policy {i}: complaints are handled within {i + 2} days.")
            for i in range(6)]
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        await rag.ingest(docs, tenant="t")
        hits, metrics = await rag.retrieve("complaint handling time", tenant="t")
        [retrieval] = await rag.compliance.query_audit_logs(AuditEventType.RETRIEVAL)
        [rerank] = await rag.compliance.query_audit_logs(AuditEventType.RERANK)
        models = await rag.compliance.query_audit_logs(AuditEventType.MODEL_LOADED)
    assert len(hits) == 2
    assert all(h.scores.rerank is not None and h.scores.fused is not None for h in hits)
    assert hits[0].scores.rerank >= hits[1].scores.rerank  # type: ignore[operator]
    assert "rerank" in metrics.stage_ms
    # the audit trail: the reranker's weights, what it saw (6 candidates) and what it kept
    assert [m.payload["role"] for m in models if m.payload] == ["embedder", "reranker", "judge",
                                                                 "retrieval_risk"]
    assert models[1].payload is not None and len(models[1].payload["weights_sha256"]) == 64
    assert rerank.parent_event_id == retrieval.event_id
    assert retrieval.payload is not None and rerank.payload is not None
    assert len(retrieval.payload["results"]["chunk_id"]) == 6
    assert rerank.payload["results"]["chunk_id"] == [h.chunk_id for h in hits]
    assert rerank.payload["results"]["scores"]["rerank"] == [h.scores.rerank for h in hits]
    assert (rerank.payload["reranker"], rerank.payload["candidates"]) == (cross_encoder_dir, 6)
