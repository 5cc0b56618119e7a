"""Configuration → concrete backends. The only module that picks implementations."""

from __future__ import annotations

import asyncio

from .config import (
    EmbedderSettings,
    GeneratorSettings,
    JudgeSettings,
    PipelineConfig,
    RerankerSettings,
)
from .generate.base import Generator
from .protocols import Embedder, Reranker, VectorStore
from .scoring.base import Judge


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


def build_generator(settings: GeneratorSettings, *, embedder: Embedder) -> Generator:
    """``extractive`` (offline, uses the embedder) or ``openai`` (OpenAI-compatible server)."""
    from .generate import ExtractiveGenerator, OpenAIChatGenerator

    if settings.kind == "extractive":
        return ExtractiveGenerator(embedder, max_sentences=settings.max_sentences,
                                   min_similarity=settings.min_similarity)
    assert settings.model is not None  # enforced by GeneratorSettings
    return OpenAIChatGenerator(settings.model, base_url=settings.base_url,
                               api_key_env=settings.api_key_env,
                               temperature=settings.temperature, max_tokens=settings.max_tokens,
                               timeout_s=settings.timeout_s)


async def build_judge(settings: JudgeSettings, *, embedder: Embedder,
                      device: str = "cpu") -> Judge:
    """``feature`` (offline default; ``model`` may point at another fitted JSON) or ``nli``."""
    if settings.kind == "feature":
        from .scoring.feature_judge import FeatureJudge

        return FeatureJudge(embedder, model_path=settings.model)
    from .scoring.nli_judge import NLIJudge

    assert settings.model is not None  # enforced by JudgeSettings
    return await asyncio.to_thread(NLIJudge, settings.model, labels=settings.labels,
                                   max_length=settings.max_length, device=device)
