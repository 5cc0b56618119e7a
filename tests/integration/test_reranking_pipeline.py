"""The cross-encoder path through the pipeline, configured by path as a user would."""

from __future__ import annotations

import pytest

from advanced_rag import AdvancedRAGPipeline, Document
from advanced_rag.config import validate_config

pytestmark = pytest.mark.integration


async def test_configured_cross_encoder_reranks(cross_encoder_dir: str, embedder,  # type: ignore[no-untyped-def]
                                                milvus_uri: str) -> None:
    config = validate_config({
        "milvus": {"uri": milvus_uri},
        "pipeline": {"top_k": 6, "rerank_top_k": 2},
        "reranker": {"kind": "cross-encoder", "model": cross_encoder_dir, "max_length": 128},
    })
    docs = [Document(f"d{i}", f"Policy {i}: complaints are handled within {i + 2} days.")
            for i in range(6)]
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        await rag.ingest(docs, tenant="t")
        hits, metrics = await rag.retrieve("complaint handling time", tenant="t")
    assert len(hits) == 2
    assert all(h.scores.rerank is not None and h.scores.fused is not None for h in hits)
    assert hits[0].scores.rerank >= hits[1].scores.rerank  # type: ignore[operator]
    assert "rerank" in metrics.stage_ms
