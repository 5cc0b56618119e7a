"""Frozen value types that cross the library's seams.

Everything a caller gets back is one of these: typed, immutable, and the same shape
whatever flags were passed. Where a value could not be computed it is ``None``,
never NaN.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

MetadataValue = str | int | float | bool


class SearchType(StrEnum):
    """Which signals a retrieval uses."""

    HYBRID = "hybrid"
    DENSE = "dense"
    KEYWORD = "keyword"


class Fusion(StrEnum):
    """How hybrid retrieval fuses the dense and BM25 rankings."""

    RRF = "rrf"
    WEIGHTED = "weighted"


class Classification(StrEnum):
    """Data classification of a document, used by filters and (later) retention."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


class _ItemAccess:
    """Lets the seed's ``report['key']`` style work on a typed object as well as ``report.key``."""

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or key.startswith("_") or not hasattr(self, key):
            raise KeyError(key)
        return getattr(self, key)


@dataclass(frozen=True, slots=True)
class Document:
    """A source document handed to :meth:`AdvancedRAGPipeline.ingest`.

    Example::

        Document(id="kyc-001", text="Customers with a risk score ...",
                 metadata={"owner": "compliance"}, source="policy-handbook",
                 classification=Classification.INTERNAL)
    """

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""
    classification: Classification = Classification.INTERNAL

    @property
    def content_hash(self) -> str:
        """SHA-256 over everything that makes a new version: text, metadata, source, class."""
        payload = json.dumps(
            {
                "text": self.text,
                "metadata": dict(self.metadata),
                "source": self.source,
                "classification": str(self.classification),
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            default=str,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Chunk:
    """A contiguous span ``text[start:end]`` of a document, sized for the embedder."""

    chunk_id: str
    doc_id: str
    doc_version: int
    position: int
    text: str
    start: int
    end: int
    token_count: int


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """What model produced a vector or a score: name plus SHA-256 over its weight files."""

    name: str
    sha256: str
    dimension: int | None = None
    endpoint: str | None = None  # a hosted model: the API it is served from


@dataclass(frozen=True, slots=True)
class HitScores(_ItemAccess):
    """Per-signal scores of one hit; ``None`` where that signal was not computed."""

    dense: float | None = None
    bm25: float | None = None
    fused: float | None = None
    rerank: float | None = None


@dataclass(frozen=True, slots=True)
class Hit(_ItemAccess):
    """One retrieved chunk with its provenance and scores."""

    chunk_id: str
    doc_id: str
    doc_version: int
    text: str
    metadata: Mapping[str, Any]
    source: str
    classification: str
    scores: HitScores
    tenant: str | None = None  # the tenant the store says the chunk belongs to

    @property
    def score(self) -> float:
        """The score the final ranking used: rerank, else fused, else the single signal."""
        for value in (self.scores.rerank, self.scores.fused, self.scores.dense,
                      self.scores.bm25):
            if value is not None:
                return value
        return 0.0


@dataclass(frozen=True, slots=True)
class RetrievalMetrics(_ItemAccess):
    """Latency of one retrieval (milliseconds per stage, total, whether the SLA held) and its
    retrieval-time risk: the calibrated probability that no returned chunk is from a
    relevant document (``None``, with the reason, where no fitted model applies)."""

    stage_ms: Mapping[str, float]
    total_ms: float
    target_latency_ms: float
    hallucination_risk: float | None = None
    hallucination_risk_reason: str | None = None
    rerank: Mapping[str, Any] | None = None  # the rerank budget decision, when one ran

    @property
    def sla_met(self) -> bool:
        return self.total_ms <= self.target_latency_ms


@dataclass(frozen=True, slots=True)
class RetrievalResult:
    """Hits plus metrics. Unpacks as the seed expects: ``hits, metrics = await rag.retrieve(q)``."""

    query: str
    tenant: str
    search_type: SearchType
    hits: tuple[Hit, ...]
    metrics: RetrievalMetrics

    def __iter__(self) -> Iterator[Any]:
        yield list(self.hits)
        yield self.metrics

    def __len__(self) -> int:
        return 2


@dataclass(frozen=True, slots=True)
class MetadataFilter:
    """A typed filter, compiled to an escaped Milvus expression (never a raw string).

    ``None`` means "no constraint". ``metadata_equals`` matches top-level metadata keys.
    """

    sources: tuple[str, ...] | None = None
    classifications: tuple[str, ...] | None = None
    doc_ids: tuple[str, ...] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    metadata_equals: Mapping[str, MetadataValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IngestFailure:
    """A document that was not ingested, and why."""

    doc_id: str
    reason: str


class DocumentStatus(StrEnum):
    """What an ingest did with one document."""

    NEW = "new"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class DocumentOutcome:
    """One document's fate in an ingest, with what an auditor needs to trace it later.

    ``version`` and ``content_hash`` are those now stored (``None`` for a failed document that
    never validated); ``chunk_ids`` are the chunks written by this ingest (empty when
    unchanged or failed); ``reason`` says why a document failed, or, for an ingested or
    unchanged one, which leftover chunks of other versions are still to be removed.
    """

    doc_id: str
    status: DocumentStatus
    version: int | None = None
    content_hash: str | None = None
    chunk_ids: tuple[str, ...] = ()
    classification: str | None = None
    source: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class IngestReport(_ItemAccess):
    """What one ingest call did. Re-running an unchanged ingest reports only ``unchanged``."""

    tenant: str
    new: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: tuple[str, ...]
    failed: tuple[IngestFailure, ...]
    chunks_written: int
    chunks_deleted: int
    stage_seconds: Mapping[str, float]
    documents: tuple[DocumentOutcome, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failed
