"""Configuration → concrete backends. The only module that picks implementations.

Hosted components (Cohere, OpenAI-compatible) share one
:class:`~advanced_rag.remote.resilience.Resilience` — one retry policy, one circuit breaker
per provider endpoint — which the pipeline builds once and passes to every builder here.
A ``fallback:`` list in a section becomes a chain (see :mod:`advanced_rag.remote.fallback`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

from .config import (
    EmbedderSettings,
    GeneratorSettings,
    JudgeSettings,
    PipelineConfig,
    RerankerSettings,
)
from .generate.base import Generator
from .protocols import Embedder, Reranker, VectorStore
from .remote.resilience import Resilience
from .scoring.base import Judge

S = TypeVar("S", RerankerSettings, GeneratorSettings, JudgeSettings)
C = TypeVar("C")

_KEY_ENV = {"openai": "OPENAI_API_KEY", "cohere": "CO_API_KEY"}


async def build_embedder(settings: EmbedderSettings, *, resilience: Resilience | None = None,
                         data_dir: str = "./.advanced-rag") -> Embedder:
    """Load the configured embedder (a local model loads in a worker thread; an ONNX backend
    is exported once into ``embedder.onnx_cache_dir``, by default ``<data_dir>/onnx``)."""
    if settings.kind in _KEY_ENV:  # hosted: openai or cohere
        from .embed.remote import CohereEmbedder, OpenAIEmbedder

        hosted = OpenAIEmbedder if settings.kind == "openai" else CohereEmbedder
        return hosted(settings.model, dimension=settings.dimension, base_url=settings.base_url,
                      api_key_env=settings.api_key_env or _KEY_ENV[settings.kind],
                      timeout_s=settings.timeout_s, batch_size=settings.batch_size,
                      resilience=resilience)
    if settings.backend in ("onnx", "onnx-int8"):
        from .embed.onnx import OnnxEmbedder

        return await asyncio.to_thread(
            OnnxEmbedder, settings.model,
            cache_dir=settings.onnx_cache_dir or str(Path(data_dir) / "onnx"),
            quantize=settings.backend == "onnx-int8", device=settings.device,
            batch_size=settings.batch_size, query_prefix=settings.query_prefix,
            document_prefix=settings.document_prefix,
            query_micro_batch=settings.query_micro_batch)
    from .embed.sentence_transformers import SentenceTransformerEmbedder

    return await asyncio.to_thread(
        SentenceTransformerEmbedder, settings.model, device=settings.device,
        batch_size=settings.batch_size, backend=settings.backend,
        query_prefix=settings.query_prefix, document_prefix=settings.document_prefix,
        query_micro_batch=settings.query_micro_batch, query_threads=settings.query_threads)


async def _chain(settings: S, build: Callable[[S], Awaitable[C]],
                 wrap: Callable[[Sequence[C]], C]) -> C:
    """The component for ``settings``, wrapped in a fallback chain when it lists fallbacks."""
    members = [await build(settings)]
    for fallback in settings.fallback:
        members.append(await build(fallback))
    return members[0] if len(members) == 1 else wrap(members)


async def build_reranker(settings: RerankerSettings, *, device: str = "cpu",
                         resilience: Resilience | None = None) -> Reranker:
    """``none`` → :class:`NoReranker`; ``cross-encoder`` → :class:`CrossEncoderReranker`;
    ``cohere`` → :class:`CohereReranker`; then the ``fallback`` chain, if any."""
    from .remote.fallback import FallbackReranker

    async def one(s: RerankerSettings) -> Reranker:
        from .rerank import CrossEncoderReranker, NoReranker

        if s.kind == "none":
            return NoReranker()
        assert s.model is not None  # enforced by RerankerSettings
        if s.kind == "cohere":
            from .rerank.cohere import CohereReranker

            return CohereReranker(s.model, base_url=s.base_url,
                                  api_key_env=s.api_key_env or _KEY_ENV["cohere"],
                                  timeout_s=s.timeout_s, max_tokens_per_doc=s.max_tokens_per_doc,
                                  resilience=resilience)
        return await asyncio.to_thread(
            CrossEncoderReranker, s.model, max_length=s.max_length, batch_size=s.batch_size,
            device=device, backend=s.backend)

    return await _chain(settings, one, FallbackReranker)


def build_store(config: PipelineConfig, *, dimension: int) -> VectorStore:
    from .store.milvus import MilvusStore

    return MilvusStore(config.milvus, dimension=dimension)


async def build_generator(settings: GeneratorSettings, *, embedder: Embedder,
                          resilience: Resilience | None = None) -> Generator:
    """``extractive`` (offline, uses the embedder) or ``openai`` (OpenAI-compatible server),
    then the ``fallback`` chain, if any."""
    from .remote.fallback import FallbackGenerator

    async def one(s: GeneratorSettings) -> Generator:
        from .generate import ExtractiveGenerator, OpenAIChatGenerator

        if s.kind == "extractive":
            return ExtractiveGenerator(embedder, max_sentences=s.max_sentences,
                                       min_similarity=s.min_similarity)
        assert s.model is not None  # enforced by GeneratorSettings
        return OpenAIChatGenerator(s.model, base_url=s.base_url, api_key_env=s.api_key_env,
                                   temperature=s.temperature, max_tokens=s.max_tokens,
                                   timeout_s=s.timeout_s, resilience=resilience)

    return await _chain(settings, one, FallbackGenerator)


async def build_judge(settings: JudgeSettings, *, embedder: Embedder, device: str = "cpu",
                      resilience: Resilience | None = None) -> Judge:
    """``feature`` (offline default; ``model`` may point at another fitted JSON), ``nli`` or
    ``openai``, then the ``fallback`` chain, if any."""
    from .remote.fallback import FallbackJudge

    async def one(s: JudgeSettings) -> Judge:
        if s.kind == "feature":
            from .scoring.feature_judge import FeatureJudge

            return FeatureJudge(embedder, model_path=s.model)
        assert s.model is not None  # enforced by JudgeSettings
        if s.kind == "openai":
            from .scoring.openai_judge import OpenAIJudge

            return OpenAIJudge(s.model, base_url=s.base_url, api_key_env=s.api_key_env,
                               timeout_s=s.timeout_s, max_tokens=s.max_tokens,
                               structured_output=s.structured_output, resilience=resilience)
        from .scoring.nli_judge import NLIJudge

        return await asyncio.to_thread(NLIJudge, s.model, labels=s.labels,
                                       max_length=s.max_length, device=device)

    return await _chain(settings, one, FallbackJudge)
