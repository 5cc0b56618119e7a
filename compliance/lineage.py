"""Document versions and lineage, and which versions supported a given answer.

``document_versions`` (in the audit database) gets one row per change of a document: its
version, content SHA-256, chunk ids, classification, who changed it and when, the change type
(``create`` / ``update`` / ``delete`` / ``erase``), the retention date its classification's
rule gives, and the id of the audit event that recorded it.

* :meth:`LineageStore.lineage` — the seed's ``get_document_lineage(doc_id)``: every version.
* :func:`explain_request` — the auditor's question "which version of which documents
  supported the answer given to request X on date Y", answered from the audit log (the
  retrieval's returned chunks with their doc versions, the generation's citations) joined with
  ``document_versions`` for content hashes.

Example::

    lineage = await LineageStore.open(config)
    [(v.version, v.change_type, v.content_sha256) for v in await lineage.lineage("kyc-1", "bank-a")]
    explanation = await ComplianceManager(config).explain_request("req-0042", on=date(2026, 11, 17))
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Index, Integer, String, Text, update
from sqlmodel import Column, Field, Session, SQLModel, select

from .audit.engine import engine_with_tables
from .audit.models import AuditEventType, AuditRecord, UTCDateTime

if TYPE_CHECKING:
    from advanced_rag.config import PipelineConfig
    from advanced_rag.types import DocumentOutcome

__all__ = ["DocumentVersion", "DocumentVersionRow", "LineageStore", "RequestExplanation",
           "SupportingDocument", "explain_request", "supporting_keys"]

CHANGE_TYPES = ("create", "update", "delete", "erase")


class DocumentVersionRow(SQLModel, table=True):
    """Table ``document_versions``."""

    __tablename__ = "document_versions"
    __table_args__ = (Index("ix_document_versions_doc", "tenant", "doc_id", "version"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True,
                                                          autoincrement=True))
    tenant: str = Field(sa_column=Column(String(128), nullable=False))
    doc_id: str = Field(sa_column=Column(String(512), nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    content_sha256: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    change_type: str = Field(sa_column=Column(String(16), nullable=False))
    chunk_ids: str = Field(sa_column=Column(Text, nullable=False))  # JSON list
    classification: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    created_by: str = Field(sa_column=Column(String(256), nullable=False))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    retention_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(),
                                                                           nullable=True))
    audit_event_id: str | None = Field(default=None, sa_column=Column(String(36), nullable=True))
    erased_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(),
                                                                     nullable=True))


@dataclass(frozen=True, slots=True)
class DocumentVersion:
    """One change of a document (see the module docstring)."""

    tenant: str
    doc_id: str
    version: int
    content_sha256: str | None
    change_type: str
    chunk_ids: tuple[str, ...]
    classification: str | None
    created_by: str
    created_at: datetime
    retention_until: datetime | None
    audit_event_id: str | None
    erased_at: datetime | None

    def __getitem__(self, key: str) -> Any:  # the seed reads lineage entries as dicts
        return getattr(self, key)


def _version(row: DocumentVersionRow) -> DocumentVersion:
    return DocumentVersion(row.tenant, row.doc_id, row.version, row.content_sha256,
                           row.change_type, tuple(json.loads(row.chunk_ids)), row.classification,
                           row.created_by, row.created_at, row.retention_until,
                           row.audit_event_id, row.erased_at)


class LineageStore:
    """The ``document_versions`` table (blocking SQL in a worker thread)."""

    def __init__(self, engine: Engine, *, retention_days: dict[str, int] | None = None) -> None:
        self.engine = engine
        self._retention_days = retention_days or {}

    @classmethod
    async def open(cls, config: PipelineConfig) -> LineageStore:
        engine = await asyncio.to_thread(
            engine_with_tables, config.audit.resolved_url(config.data_dir),
            [DocumentVersionRow.__table__], schema=config.audit.db_schema,  # type: ignore[attr-defined]
            sqlite_synchronous=config.audit.sqlite_synchronous)
        days = {str(label): rule.keep_days for label, rule in config.retention.documents.items()}
        return cls(engine, retention_days=days)

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.dispose)

    def _retention_until(self, classification: str | None, when: datetime) -> datetime | None:
        days = self._retention_days.get(classification or "")
        return when + timedelta(days=days) if days else None

    async def record_ingest(self, outcomes: Sequence[DocumentOutcome], *, tenant: str, actor: str,
                            event_ids: Sequence[str | None]) -> int:
        """Rows for the new and updated documents of an ingest batch (``event_ids``: the audit
        event of each outcome, same order). Returns how many rows were written."""
        now = datetime.now(UTC)
        rows = [DocumentVersionRow(
            tenant=tenant, doc_id=o.doc_id, version=o.version, content_sha256=o.content_hash,
            change_type="create" if str(o.status) == "new" else "update",
            chunk_ids=json.dumps(list(o.chunk_ids)), classification=o.classification,
            created_by=actor, created_at=now,
            retention_until=self._retention_until(o.classification, now),
            audit_event_id=event_id)
            for o, event_id in zip(outcomes, event_ids, strict=True)
            if str(o.status) in ("new", "updated") and o.version is not None]
        if rows:
            await asyncio.to_thread(self._add, rows)
        return len(rows)

    async def record_removal(self, doc_ids: Sequence[str], *, tenant: str, actor: str,
                             change_type: str, audit_event_id: str | None) -> list[DocumentVersion]:
        """A ``delete`` or ``erase`` row per known document (its last version); for ``erase``
        every earlier version is also marked erased. Returns the rows written."""
        assert change_type in ("delete", "erase")
        now = datetime.now(UTC)

        def write() -> list[DocumentVersion]:
            written: list[DocumentVersion] = []
            with Session(self.engine, expire_on_commit=False) as session:
                for doc_id in doc_ids:
                    last = session.exec(select(DocumentVersionRow).where(
                        DocumentVersionRow.tenant == tenant,
                        DocumentVersionRow.doc_id == doc_id,
                    ).order_by(DocumentVersionRow.id.desc()).limit(1)).first()  # type: ignore[union-attr]
                    if last is None:
                        continue
                    row = DocumentVersionRow(
                        tenant=tenant, doc_id=doc_id, version=last.version,
                        content_sha256=last.content_sha256, change_type=change_type,
                        chunk_ids="[]", classification=last.classification, created_by=actor,
                        created_at=now, audit_event_id=audit_event_id,
                        erased_at=now if change_type == "erase" else None)
                    session.add(row)
                    if change_type == "erase":
                        session.execute(update(DocumentVersionRow).where(
                            DocumentVersionRow.tenant == tenant,  # type: ignore[arg-type]
                            DocumentVersionRow.doc_id == doc_id,  # type: ignore[arg-type]
                            DocumentVersionRow.erased_at.is_(None),  # type: ignore[union-attr]
                        ).values(erased_at=now))
                    written.append(_version(row))
                session.commit()
            return written
        return await asyncio.to_thread(write)

    def _add(self, rows: Sequence[DocumentVersionRow]) -> None:
        with Session(self.engine) as session:
            session.add_all(rows)
            session.commit()

    async def lineage(self, doc_id: str, tenant: str | None = None) -> list[DocumentVersion]:
        """Every recorded change of ``doc_id`` (of one tenant, or all), oldest first."""
        def read() -> list[DocumentVersion]:
            statement = select(DocumentVersionRow).where(
                DocumentVersionRow.doc_id == doc_id)
            if tenant is not None:
                statement = statement.where(DocumentVersionRow.tenant == tenant)
            with Session(self.engine) as session:
                return [_version(r) for r in session.exec(
                    statement.order_by(DocumentVersionRow.id)).all()]  # type: ignore[arg-type]
        return await asyncio.to_thread(read)

    async def version(self, tenant: str, doc_id: str, version: int) -> DocumentVersion | None:
        """The create/update row of one version (``None`` if it was never recorded)."""
        for entry in await self.lineage(doc_id, tenant):
            if entry.version == version and entry.change_type in ("create", "update"):
                return entry
        return None


@dataclass(frozen=True, slots=True)
class SupportingDocument:
    """A document version a request's retrieval returned (and whether the answer cited it)."""

    doc_id: str
    version: int
    content_sha256: str | None
    chunk_ids: tuple[str, ...]
    cited: bool
    erased: bool


@dataclass(frozen=True, slots=True)
class RequestExplanation:
    """What the audit log says request ``request_id`` retrieved, answered and relied on."""

    request_id: str
    occurred_at: datetime | None
    actor: str | None
    tenant: str | None
    query: Any
    answer: Any
    decision: str | None
    documents: tuple[SupportingDocument, ...]
    events: tuple[str, ...]


def explain_request(request_id: str, records: Sequence[AuditRecord],
                    versions: Mapping[tuple[str, int], DocumentVersion]) -> RequestExplanation:
    """Which version of which documents supported the answer given to ``request_id`` (pure).

    ``records``: the audit events of that request (payloads as people read them);
    ``versions``: ``(doc_id, version)`` → its create/update row, for the content hashes."""
    records = [r for r in records if r.request_id == request_id]
    retrievals = [r for r in records if r.event_type == AuditEventType.RETRIEVAL]
    generations = [r for r in records if r.event_type == AuditEventType.GENERATION]
    cited = {(c.get("doc_id"), c.get("chunk_id")) for g in generations
             for c in (g.payload or {}).get("citations", [])}
    found: dict[tuple[str, int], list[str]] = {}
    for retrieval in retrievals:
        for hit in _hits((retrieval.payload or {}).get("results")):
            found.setdefault((hit["doc_id"], int(hit["doc_version"])), []).append(hit["chunk_id"])
    documents = []
    for (doc_id, version), chunk_ids in found.items():
        entry = versions.get((doc_id, version))
        documents.append(SupportingDocument(
            doc_id, version, entry.content_sha256 if entry else None, tuple(chunk_ids),
            any((doc_id, c) in cited for c in chunk_ids),
            bool(entry and entry.erased_at is not None)))
    first = retrievals[0] if retrievals else (records[0] if records else None)
    generation = (generations[0].payload or {}) if generations else {}
    return RequestExplanation(
        request_id=request_id, occurred_at=first.occurred_at if first else None,
        actor=first.actor if first else None, tenant=first.tenant if first else None,
        query=(first.payload or {}).get("query") if first else None,
        answer=generation.get("answer"), decision=generation.get("decision"),
        documents=tuple(documents), events=tuple(r.event_id for r in records))


def supporting_keys(records: Sequence[AuditRecord]) -> set[tuple[str, int]]:
    """``(doc_id, version)`` of every chunk the retrievals among ``records`` returned."""
    return {(hit["doc_id"], int(hit["doc_version"])) for r in records
            if r.event_type == AuditEventType.RETRIEVAL
            for hit in _hits((r.payload or {}).get("results"))}


def _hits(results: Any) -> list[dict[str, Any]]:
    """The retrieval payload's results as dicts: columnar (``hits_payload``) or a list."""
    if isinstance(results, list):
        return [r for r in results if isinstance(r, dict)]
    if isinstance(results, dict) and "chunk_id" in results:
        columns = {k: v for k, v in results.items() if isinstance(v, list)}
        n = len(columns["chunk_id"])
        return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    return []
