"""Configuration → concrete backends. The only module that picks implementations."""

from __future__ import annotations

import asyncio

from .config import EmbedderSettings, PipelineConfig, RerankerSettings
from .protocols import Embedder, Reranker, VectorStore


async def build_embedder(settings: EmbedderSettings) -> Embedder:
    """Load the configured embedder (model loading runs in a worker thread)."""
    from .embed.sentence_transformers import SentenceTransformerEmbedder

    return await asyncio.to_thread(
        SentenceTransformerEmbedder, settings.model, device=settings.device,
        batch_size=settings.batch_size, backend=settings.backend,
        query_prefix=settings.query_prefix, document_prefix=settings.document_prefix)


async def build_reranker(settings: RerankerSettings, *, device: str = "cpu") -> Reranker:
    """``none`` → :class:`NoReranker`; ``cross-encoder`` → :class:`CrossEncoderReranker`."""
    from .rerank import CrossEncoderReranker, NoReranker

    if settings.kind == "none":
        return NoReranker()
    assert settings.model is not None  # enforced by RerankerSettings
    return await asyncio.to_thread(
        CrossEncoderReranker, settings.model, max_length=settings.max_length,
        batch_size=settings.batch_size, device=device, backend=settings.backend)


def build_store(config: PipelineConfig, *, dimension: int) -> VectorStore:
    from .store.milvus import MilvusStore

    return MilvusStore(config.milvus, dimension=dimension)
