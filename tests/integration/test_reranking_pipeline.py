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


async def test_adaptive_budget_reranks_what_fits_and_says_so(cross_encoder_dir: str, embedder,  # type: ignore[no-untyped-def]
                                                             milvus_uri: str) -> None:
    """A target far below the cross-encoder's cost: the first rerank (cost unknown) reranks
    all and measures; later ones rerank only min_candidates, the rest in first-stage order."""
    config = validate_config({
        "milvus": {"uri": milvus_uri}, "data_dir": str(Path(milvus_uri).parent),
        "pipeline": {"top_k": 8, "rerank_top_k": 4, "target_latency_ms": 1},
        "reranker": {"kind": "cross-encoder", "model": cross_encoder_dir, "max_length": 128,
                     "min_candidates": 2},
    })
    docs = [Document(f"d{i}", f"Policy {i}: complaints are handled within {i + 2} days.")
            for i in range(8)]
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        await rag.ingest(docs, tenant="t")
        first = await rag.retrieve("complaint handling time", tenant="t")
        second = await rag.retrieve("complaint handling time", tenant="t")
        reranks = await rag.compliance.query_audit_logs(AuditEventType.RERANK)
    assert first.metrics.rerank is not None and first.metrics.rerank["reranked"] == 8
    assert first.metrics.rerank["per_passage_ms"] is None  # nothing measured before
    decision = second.metrics.rerank
    assert decision is not None and decision["candidates"] == 8 and decision["reranked"] == 2
    assert decision["budget_ms"] < 0 and decision["per_passage_ms"] > 0
    assert "minimum" in decision["reason"]
    hits = second.hits
    assert len(hits) == 4
    assert [h.scores.rerank is not None for h in hits] == [True, True, False, False]
    assert hits[0].scores.rerank >= hits[1].scores.rerank  # type: ignore[operator]
    # the unreranked rest keeps its first-stage order, after the reranked two
    first_stage = [h.chunk_id for h in await _first_stage(config, embedder)]
    rest = [h.chunk_id for h in hits[2:]]
    assert rest == [c for c in first_stage[2:] if c in rest]
    assert [r.payload["budget"]["reranked"] for r in reranks if r.payload] == [8, 2]


async def _first_stage(config, embedder):  # type: ignore[no-untyped-def]
    plain = config.model_copy(update={"reranker": validate_config({}).reranker})
    async with AdvancedRAGPipeline(plain, embedder=embedder) as rag:
        return (await rag.retrieve("complaint handling time", tenant="t")).hits


async def test_fixed_budget_reranks_every_candidate(cross_encoder_dir: str, embedder,  # type: ignore[no-untyped-def]
                                                    milvus_uri: str) -> None:
    config = validate_config({
        "milvus": {"uri": milvus_uri}, "data_dir": str(Path(milvus_uri).parent),
        "pipeline": {"top_k": 6, "rerank_top_k": 3, "target_latency_ms": 1},
        "reranker": {"kind": "cross-encoder", "model": cross_encoder_dir, "max_length": 128,
                     "budget": "fixed"},
    })
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        await rag.ingest([Document(f"d{i}", f"Rule {i} about complaints.") for i in range(6)],
                         tenant="t")
        for _ in range(2):
            result = await rag.retrieve("complaints", tenant="t")
            assert result.metrics.rerank is not None
            assert result.metrics.rerank["reranked"] == 6
            assert all(h.scores.rerank is not None for h in result.hits)
