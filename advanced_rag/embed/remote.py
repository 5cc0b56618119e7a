"""Embeddings from a hosted API: OpenAI-compatible ``/embeddings`` or Cohere ``/v2/embed``.

Both adapters honour the :class:`~advanced_rag.protocols.Embedder` contract of the local
model: float32 rows, L2-normalised, one per input, ``embed_query`` of a text equal to its
document embedding for OpenAI (Cohere embeds queries with ``input_type="search_query"``, as
its models are trained to). Texts are sent ``batch_size`` at a time; every request goes
through the shared :class:`~advanced_rag.remote.resilience.Resilience` policy.

``dimension`` must be configured (``embedder.dimension``): the collection is created with it
before anything is embedded, and every returned vector is checked against it — a wrong
length is a ``malformed`` :class:`~advanced_rag.errors.ProviderError`, never a silently
corrupted index. There is no fallback for embedders: another model's vectors live in a
different space and cannot be searched against the stored ones.

``count_tokens`` (the chunker sizes chunks by it) is an approximation — the provider's
tokenizer is not available offline: a word-piece count that is exact for short common words
and counts one token per six characters of longer ones. Chunks of the default 200 tokens stay
well inside every provider's input limit (Cohere 512, OpenAI 8191).

Example::

    embedder = OpenAIEmbedder("text-embedding-3-small", dimension=1536, resilience=Resilience())
    vectors = await embedder.embed_documents(["KYC applies to new customers."])
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, ProviderError
from ..remote.cohere_sdk import CohereEndpoint, cohere_usage
from ..remote.identity import remote_identity
from ..remote.openai_sdk import OpenAIEndpoint, openai_usage
from ..remote.resilience import Resilience
from ..types import ModelIdentity

__all__ = ["CohereEmbedder", "OpenAIEmbedder", "approximate_tokens"]

_PIECES = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def approximate_tokens(text: str) -> int:
    """An estimate of a BPE tokenizer's count: one token per punctuation mark, one per word of
    up to six characters, one per six characters of a longer word.

    Example::

        >>> approximate_tokens("hello world"), approximate_tokens(""), approximate_tokens("GDPR, Art. 17")
        (2, 0, 5)
    """
    return sum(max(1, math.ceil(len(piece) / 6)) for piece in _PIECES.findall(text))


def _normalised(rows: Sequence[Any], dimension: int, where: str,
                provider: str) -> np.ndarray:
    """Validated float32 rows, L2-normalised; ``malformed`` when a row has the wrong length
    or is not finite."""
    try:
        matrix = np.asarray(rows, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ProviderError(f"malformed embeddings from {where}: {exc}", provider=provider,
                            kind="malformed") from exc
    if matrix.ndim != 2 or matrix.shape[1] != dimension:
        got = matrix.shape[1] if matrix.ndim == 2 else f"shape {matrix.shape}"
        raise ProviderError(f"{where} returned {got}-dimensional embeddings; embedder.dimension "
                            f"is {dimension}", provider=provider, kind="malformed")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if not np.all(np.isfinite(matrix)) or np.any(norms == 0):
        raise ProviderError(f"{where} returned zero or non-finite embeddings", provider=provider,
                            kind="malformed")
    out: np.ndarray = (matrix / norms).astype(np.float32)
    return out


class _RemoteEmbedder:
    """Batching, validation and identity shared by the hosted embedders."""

    def __init__(self, endpoint: OpenAIEndpoint | CohereEndpoint, *, dimension: int | None,
                 batch_size: int, resilience: Resilience) -> None:
        if dimension is None:
            raise ConfigError(f"embedder.dimension is required for a hosted embedder (the "
                              f"vector size {endpoint.model!r} returns)", key="embedder.dimension")
        self._endpoint = endpoint
        self._dimension = dimension
        self._batch_size = batch_size
        self._resilience = resilience
        self._identity = remote_identity(endpoint.provider, endpoint.endpoint, endpoint.model,
                                         dimension)

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def endpoint(self) -> OpenAIEndpoint | CohereEndpoint:
        return self._endpoint

    def count_tokens(self, text: str) -> int:
        return approximate_tokens(text)

    def _where(self) -> str:
        return self._endpoint.where

    async def _request(self, texts: list[str], *, query: bool) -> tuple[Any, Any]:
        """One provider call: the raw rows it returned (one per text, or something else to
        be refused as malformed) and the response (for its usage)."""
        raise NotImplementedError

    def _usage(self, response: Any) -> dict[str, float]:
        raise NotImplementedError

    async def _embed_batch(self, texts: list[str], *, query: bool) -> np.ndarray:
        """Embed one batch under the resilience policy, validating what came back."""
        endpoint = self._endpoint
        provider = endpoint.provider

        async def attempt() -> tuple[np.ndarray, Any]:
            try:
                rows, response = await self._request(texts, query=query)
            except endpoint.sdk_errors as exc:
                raise endpoint.error(exc, "embed") from exc
            if not isinstance(rows, list) or len(rows) != len(texts):
                count = len(rows) if isinstance(rows, list) else 0
                raise ProviderError(f"{self._where()} returned {count} embeddings for "
                                    f"{len(texts)} texts", provider=provider, kind="malformed")
            return _normalised(rows, self._dimension, self._where(), provider), response

        vectors, _ = await self._resilience.call(endpoint.target, "embed", attempt,
                                                 usage=lambda result: self._usage(result[1]))
        return vectors

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        parts = [await self._embed_batch(list(texts[i:i + self._batch_size]), query=False)
                 for i in range(0, len(texts), self._batch_size)]
        return np.concatenate(parts, axis=0)

    async def embed_query(self, text: str) -> np.ndarray:
        vectors = await self._embed_batch([text], query=True)
        return np.asarray(vectors[0])

    async def probe(self) -> str:
        """Embed one short text (the cheapest call that proves the model answers)."""
        await self.embed_query("health check")
        return f"{self._dimension}-d embeddings"

    async def aclose(self) -> None:
        await self._endpoint.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._endpoint!r}, dimension={self._dimension})"


class OpenAIEmbedder(_RemoteEmbedder):
    """``POST {base_url}/embeddings`` (``encoding_format="float"``, which every
    OpenAI-compatible server accepts)."""

    def __init__(self, model: str, *, dimension: int | None, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout_s: float = 30.0,
                 batch_size: int = 256, resilience: Resilience | None = None) -> None:
        endpoint = OpenAIEndpoint(model, base_url=base_url, api_key_env=api_key_env,
                                  timeout_s=timeout_s, setting="embedder")
        super().__init__(endpoint, dimension=dimension, batch_size=batch_size,
                         resilience=resilience or Resilience())

    async def _request(self, texts: list[str], *, query: bool) -> tuple[Any, Any]:
        endpoint = self._endpoint
        assert isinstance(endpoint, OpenAIEndpoint)
        response = await endpoint.client.embeddings.create(
            model=endpoint.model, input=texts, encoding_format="float")
        data = sorted(getattr(response, "data", None) or [],
                      key=lambda item: getattr(item, "index", 0))
        return [getattr(item, "embedding", None) for item in data], response

    def _usage(self, response: Any) -> dict[str, float]:
        return openai_usage(response)


class CohereEmbedder(_RemoteEmbedder):
    """``POST {base_url}/v2/embed`` with ``input_type`` ``search_document`` for chunks and
    ``search_query`` for queries, float embeddings, and ``truncate="NONE"`` (an over-long
    text is an error, never silently cut)."""

    def __init__(self, model: str, *, dimension: int | None, base_url: str | None = None,
                 api_key_env: str = "CO_API_KEY", timeout_s: float = 30.0,
                 batch_size: int = 96, resilience: Resilience | None = None) -> None:
        endpoint = CohereEndpoint(model, base_url=base_url, api_key_env=api_key_env,
                                  timeout_s=timeout_s, setting="embedder")
        super().__init__(endpoint, dimension=dimension, batch_size=min(batch_size, 96),
                         resilience=resilience or Resilience())

    async def _request(self, texts: list[str], *, query: bool) -> tuple[Any, Any]:
        endpoint = self._endpoint
        assert isinstance(endpoint, CohereEndpoint)
        response = await endpoint.client.embed(
            model=endpoint.model, texts=texts, embedding_types=["float"],
            input_type="search_query" if query else "search_document", truncate="NONE")
        embeddings = getattr(response, "embeddings", None)
        rows = getattr(embeddings, "float_", None)
        return (getattr(embeddings, "float", None) if rows is None else rows), response

    def _usage(self, response: Any) -> dict[str, float]:
        return cohere_usage(response)
