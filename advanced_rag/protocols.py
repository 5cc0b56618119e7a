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
    headed by the document title when ``chunking.title_prefix`` is on. ``chunk_count`` is the
    number of chunks of this document version: a reader counts a version's rows against it to
    tell a complete version from a half-written one.
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
    chunk_count: int


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """What the store holds of one document.

    ``version`` and ``content_hash`` are those of the latest *complete* version (all of its
    ``chunk_count`` rows are stored); ``version == 0`` with ``content_hash == ""`` means no
    version is complete (only rows of interrupted writes are left). ``stale``: chunks of
    older complete versions are still stored. ``partial``: the versions, above or below
    ``version``, of which only some rows are stored (a write that failed or was interrupted).
    """

    doc_id: str
    version: int
    content_hash: str
    stale: bool = False
    partial: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether some version of the document is stored whole."""
        return self.version > 0

    @property
    def highest(self) -> int:
        """The highest version with any stored row: a new version must be above it, so that
        its rows never mix with those of an interrupted write."""
        return max((self.version, *self.partial))


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

    async def stored_versions(self, tenant: str, doc_ids: Sequence[str]) -> dict[str, StoredVersion]:
        """What is stored of each of ``doc_ids`` that has any row (see :class:`StoredVersion`)."""
        ...

    async def write(self, rows: Sequence[StoredChunk]) -> int:
        """Upsert ``rows`` (idempotent: a chunk id is written once); return how many."""
        ...

    async def delete_versions(self, tenant: str, doc_id: str, *, below: int | None = None,
                              versions: Sequence[int] = ()) -> int:
        """Delete the chunks of ``doc_id`` whose version is below ``below`` or in ``versions``
        (nothing when neither is given); return how many were deleted."""
        ...

    async def delete_documents(self, tenant: str, doc_ids: Sequence[str]) -> int: ...

    async def search(self, request: SearchRequest) -> list[Hit]: ...

    async def count(self, tenant: str | None = None) -> int: ...


async def close_component(component: object) -> None:
    """Release what a component holds: ``await aclose()`` if it has one (HTTP clients),
    else ``close()`` (worker threads), else nothing."""
    aclose = getattr(component, "aclose", None)
    if callable(aclose):
        await aclose()
        return
    close = getattr(component, "close", None)
    if callable(close):
        close()
