"""The seams of the pipeline: small async Protocols, each with a real default implementation.

Implementations are chosen in :mod:`advanced_rag.factory` and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .types import Chunk, Fusion, Hit, ModelIdentity, SearchType


@runtime_checkable
class TokenCounter(Protocol):
    """Counts the model tokens of a text (without special tokens); the chunker sizes by it."""

    def count_tokens(self, text: str) -> int: ...


@runtime_checkable
class Embedder(TokenCounter, Protocol):
    """Turns texts into L2-normalised dense vectors."""

    @property
    def identity(self) -> ModelIdentity: ...

    @property
    def dimension(self) -> int: ...

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    async def embed_query(self, text: str) -> np.ndarray: ...


@runtime_checkable
class Reranker(Protocol):
    """Re-scores retrieved hits against the query; returns the best ``top_k`` with rerank scores."""

    @property
    def name(self) -> str: ...

    async def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]: ...


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk with everything the vector store persists for it.

    ``text`` is what is embedded and indexed for BM25: the chunk's span of the document,
    headed by the document title when ``chunking.title_prefix`` is on.
    """

    chunk: Chunk
    text: str
    tenant: str
    vector: np.ndarray
    metadata: Mapping[str, Any]
    source: str
    classification: str
    content_hash: str
    created_at: int  # epoch seconds, UTC


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """The version of a document currently in the store."""

    doc_id: str
    version: int
    content_hash: str
    stale: bool = False  # older versions' chunks are still stored


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One search against the store. ``expr`` is already compiled and tenant-scoped."""

    tenant: str
    query_text: str
    query_vector: np.ndarray | None
    search_type: SearchType
    limit: int
    expr: str
    fusion: Fusion
    alpha: float
    rrf_k: int
    candidate_limit: int


@runtime_checkable
class VectorStore(Protocol):
    """Tenant-scoped chunk storage with dense, BM25 and hybrid search."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def stored_versions(self, tenant: str, doc_ids: Sequence[str]) -> dict[str, StoredVersion]: ...

    async def write(self, rows: Sequence[StoredChunk]) -> int: ...

    async def delete_versions(self, tenant: str, doc_id: str, *, below: int) -> int: ...

    async def delete_documents(self, tenant: str, doc_ids: Sequence[str]) -> int: ...

    async def search(self, request: SearchRequest) -> list[Hit]: ...

    async def count(self, tenant: str | None = None) -> int: ...
