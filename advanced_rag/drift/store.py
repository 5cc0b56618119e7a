"""What drift detection reads, in SQL next to the audit store: the query log, corpus samples,
named reference snapshots and the history of weekly verdicts.

* ``query_log`` — one row per retrieval, keyed by its ``retrieval`` audit event id: time,
  tenant, search type, the query embedding (float16 bytes; none for keyword-only searches,
  which embed nothing), the top score of each signal (dense, bm25, fused, rerank), the number
  of hits, the retrieval risk, and — once ``answer()`` scored it — the answer's faithfulness
  and hallucination risk. No query text: the audit event holds it (or its HMAC).
* ``drift_corpus_sample`` — a deterministic sample of chunk embeddings per ingest.
* ``drift_reference`` — a named snapshot (embeddings, scores, categories) copied out of the
  query log, so pruning the log never changes a reference.
* ``drift_report`` — one row per weekly report: verdict, magnitude, digest (the trend chart).

Rows are written by a background flusher (:class:`QueryLogWriter`) so a retrieval never waits
for this database; a crash can lose the last second of query-log rows, never an audit event.

Example::

    store = await DriftStore.open_from_config(config)
    rows = await store.query_rows(start=monday, end=next_monday, tenant="bank-a")
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, Index, LargeBinary, String, Text, delete, func, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Column, Field, Float, Integer, Session, SQLModel, select

from compliance.audit.engine import WRITE_OPTION, make_engine
from compliance.audit.models import UTCDateTime

from ..errors import BackendError, InputError

if TYPE_CHECKING:
    from ..config import PipelineConfig

__all__ = [
    "CorpusSampleRow", "DriftReferenceRow", "DriftReportRow", "DriftStore", "QueryLogEntry",
    "QueryLogRow", "QueryLogWriter", "Reference", "decode_vectors", "encode_vector",
]

log = logging.getLogger(__name__)
SCORE_KEYS = ("top_dense", "top_bm25", "top_fused", "top_rerank", "retrieval_risk",
              "faithfulness", "answer_risk")


class QueryLogRow(SQLModel, table=True):
    """Table ``query_log`` (see the module docstring)."""

    __tablename__ = "query_log"
    __table_args__ = (Index("ix_query_log_time", "created_at"),
                      Index("ix_query_log_tenant_time", "tenant", "created_at"))

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True,
                                                          autoincrement=True))
    event_id: str = Field(sa_column=Column(String(36), nullable=False, unique=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    tenant: str = Field(sa_column=Column(String(128), nullable=False))
    search_type: str = Field(sa_column=Column(String(16), nullable=False))
    embedding: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    hits: int = Field(sa_column=Column(Integer, nullable=False))
    top_dense: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    top_bm25: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    top_fused: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    top_rerank: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    retrieval_risk: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    faithfulness: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    answer_risk: float | None = Field(default=None, sa_column=Column(Float, nullable=True))


class CorpusSampleRow(SQLModel, table=True):
    """Table ``drift_corpus_sample``: sampled chunk embeddings, by ingest time."""

    __tablename__ = "drift_corpus_sample"
    __table_args__ = (Index("ix_drift_corpus_sample_time", "created_at"),)

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True,
                                                          autoincrement=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    tenant: str = Field(sa_column=Column(String(128), nullable=False))
    chunk_id: str = Field(sa_column=Column(String(512), nullable=False))
    doc_id: str = Field(sa_column=Column(String(512), nullable=False))
    embedding: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class DriftReferenceRow(SQLModel, table=True):
    """Table ``drift_reference``: named snapshots of query-log rows."""

    __tablename__ = "drift_reference"

    name: str = Field(sa_column=Column(String(64), primary_key=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    created_by: str = Field(sa_column=Column(String(256), nullable=False))
    description: str = Field(sa_column=Column(Text, nullable=False))
    tenant: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    window_start: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(),
                                                                         nullable=True))
    window_end: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(),
                                                                       nullable=True))
    size: int = Field(sa_column=Column(Integer, nullable=False))
    dimension: int = Field(sa_column=Column(Integer, nullable=False))
    embeddings: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    data: str = Field(sa_column=Column(Text, nullable=False))  # ids, scores, categories (JSON)


class DriftReportRow(SQLModel, table=True):
    """Table ``drift_report``: one row per (period, reference, tenant) report."""

    __tablename__ = "drift_report"

    id: int | None = Field(default=None, sa_column=Column(Integer, primary_key=True,
                                                          autoincrement=True))
    period: str = Field(sa_column=Column(String(32), nullable=False))
    reference: str = Field(sa_column=Column(String(64), nullable=False))
    tenant: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    status: str = Field(sa_column=Column(String(32), nullable=False))
    magnitude: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    digest: str = Field(sa_column=Column(String(64), nullable=False))


_TABLES = [QueryLogRow.__table__, CorpusSampleRow.__table__,  # type: ignore[attr-defined]
           DriftReferenceRow.__table__, DriftReportRow.__table__]  # type: ignore[attr-defined]


def encode_vector(vector: np.ndarray | Sequence[float]) -> bytes:
    """Compact float16 bytes (MiniLM cosines change by < 1e-3)."""
    return np.asarray(vector, dtype=np.float16).tobytes()


def decode_vectors(blobs: Sequence[bytes], dimension: int | None = None) -> np.ndarray:
    """Stack float16 blobs into a float32 ``(n, d)`` array."""
    if not blobs:
        return np.zeros((0, dimension or 0), dtype=np.float32)
    return np.stack([np.frombuffer(b, dtype=np.float16) for b in blobs]).astype(np.float32)


@dataclass(frozen=True, slots=True)
class QueryLogEntry:
    """One retrieval to log (built by the pipeline after its audit event committed)."""

    event_id: str
    created_at: datetime
    tenant: str
    search_type: str
    embedding: np.ndarray | None
    hits: int
    top_dense: float | None = None
    top_bm25: float | None = None
    top_fused: float | None = None
    top_rerank: float | None = None
    retrieval_risk: float | None = None


@dataclass(frozen=True, slots=True)
class AnswerScores:
    """The answer scores of a logged retrieval, added once ``answer()`` scored it."""

    event_id: str
    faithfulness: float | None
    answer_risk: float | None


@dataclass(frozen=True)
class Reference:
    """A loaded reference snapshot (or a window read from the log): rows in time order."""

    name: str
    ids: tuple[str, ...]
    times: tuple[datetime, ...]
    embeddings: np.ndarray
    scores: Mapping[str, tuple[float | None, ...]]
    categories: Mapping[str, tuple[str, ...]]
    description: str = ""
    created_at: datetime | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    tenant: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.ids)


def _reference_from_rows(name: str, rows: Sequence[QueryLogRow], **meta: Any) -> Reference:
    with_vectors = [r for r in rows if r.embedding is not None]
    dimension = len(with_vectors[0].embedding or b"") // 2 if with_vectors else 0
    return Reference(
        name=name, ids=tuple(r.event_id for r in with_vectors),
        times=tuple(r.created_at for r in with_vectors),
        embeddings=decode_vectors([r.embedding for r in with_vectors if r.embedding], dimension),
        scores={k: tuple(getattr(r, k) for r in with_vectors) for k in SCORE_KEYS},
        categories={"tenant": tuple(r.tenant for r in with_vectors),
                    "search_type": tuple(r.search_type for r in with_vectors)}, **meta)


class DriftStore:
    """Sync SQL access (run in a worker thread by the async methods)."""

    def __init__(self, url: str, *, schema: str | None = None,
                 sqlite_synchronous: str = "NORMAL") -> None:
        self._url = make_url(url)
        self._schema = schema
        self._sync = sqlite_synchronous
        self._engine: Engine | None = None

    @classmethod
    def from_config(cls, config: PipelineConfig) -> DriftStore:
        """The audit database (``audit.url``, else ``<data_dir>/audit.db``)."""
        return cls(config.audit.resolved_url(config.data_dir), schema=config.audit.db_schema)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise BackendError("the drift store is not open")
        return self._engine

    async def open(self) -> DriftStore:
        if self._engine is None:
            try:
                self._engine = await asyncio.to_thread(self._open)
            except SQLAlchemyError as exc:
                raise BackendError(f"cannot open the drift tables: {exc}") from exc
        return self

    def _open(self) -> Engine:
        engine = make_engine(self._url, schema=self._schema, sqlite_synchronous=self._sync,
                             busy_timeout_s=30.0)
        with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            SQLModel.metadata.create_all(conn, tables=_TABLES)
        return engine

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.to_thread(engine.dispose)

    async def __aenter__(self) -> DriftStore:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _write(self, statements: Sequence[Any]) -> None:
        with self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            for statement in statements:
                conn.execute(statement)

    # -- query log ------------------------------------------------------------------------

    def write_entries(self, entries: Sequence[QueryLogEntry | AnswerScores]) -> None:
        """Insert log rows and apply answer scores, in order, in one transaction."""
        table = QueryLogRow.__table__  # type: ignore[attr-defined]
        inserts = [{
            "event_id": e.event_id, "created_at": e.created_at, "tenant": e.tenant,
            "search_type": e.search_type, "hits": e.hits,
            "embedding": None if e.embedding is None else encode_vector(e.embedding),
            "top_dense": e.top_dense, "top_bm25": e.top_bm25, "top_fused": e.top_fused,
            "top_rerank": e.top_rerank, "retrieval_risk": e.retrieval_risk}
            for e in entries if isinstance(e, QueryLogEntry)]
        with self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            if inserts:
                conn.execute(table.insert(), inserts)
            for e in entries:
                if isinstance(e, AnswerScores):
                    conn.execute(update(table).where(table.c.event_id == e.event_id).values(
                        faithfulness=e.faithfulness, answer_risk=e.answer_risk))

    def _log_rows(self, *, start: datetime | None = None, end: datetime | None = None,
                  tenant: str | None = None, limit: int | None = None) -> list[QueryLogRow]:
        statement = select(QueryLogRow)
        if start is not None:
            statement = statement.where(QueryLogRow.created_at >= start)
        if end is not None:
            statement = statement.where(QueryLogRow.created_at < end)
        if tenant is not None:
            statement = statement.where(QueryLogRow.tenant == tenant)
        statement = statement.order_by(QueryLogRow.created_at, QueryLogRow.id)  # type: ignore[arg-type]
        if limit is not None:
            statement = statement.limit(limit)
        with Session(self.engine) as session:
            return list(session.exec(statement).all())

    async def window(self, name: str, *, start: datetime | None = None,
                     end: datetime | None = None, tenant: str | None = None,
                     limit: int | None = None) -> Reference:
        """Logged retrievals with an embedding in ``[start, end)`` (optionally one tenant)."""
        rows = await asyncio.to_thread(self._log_rows, start=start, end=end, tenant=tenant,
                                       limit=limit)
        return _reference_from_rows(name, rows, window_start=start, window_end=end, tenant=tenant)

    async def count_log(self) -> int:
        def count() -> int:
            with self.engine.connect() as conn:
                return int(conn.scalar(select(func.count()).select_from(QueryLogRow)) or 0)
        return await asyncio.to_thread(count)

    # -- corpus samples --------------------------------------------------------------------

    async def add_corpus_sample(self, rows: Sequence[tuple[str, str, str, np.ndarray]],
                                when: datetime) -> None:
        """``(tenant, chunk_id, doc_id, vector)`` rows sampled at ingest."""
        if not rows:
            return
        table = CorpusSampleRow.__table__  # type: ignore[attr-defined]
        values = [{"created_at": when, "tenant": t, "chunk_id": c, "doc_id": d,
                   "embedding": encode_vector(v)} for t, c, d, v in rows]
        await asyncio.to_thread(self._write, [table.insert().values(values)])

    async def delete_corpus_samples(self, tenant: str, doc_ids: Sequence[str]) -> None:
        """Forget the sampled embeddings of deleted or erased documents."""
        if doc_ids:
            table = CorpusSampleRow.__table__  # type: ignore[attr-defined]
            await asyncio.to_thread(self._write, [delete(table).where(
                table.c.tenant == tenant, table.c.doc_id.in_(list(doc_ids)))])

    async def corpus_embeddings(self, *, start: datetime | None = None,
                                end: datetime | None = None,
                                tenant: str | None = None) -> np.ndarray:
        def read() -> np.ndarray:
            statement = select(CorpusSampleRow.embedding)
            if start is not None:
                statement = statement.where(CorpusSampleRow.created_at >= start)
            if end is not None:
                statement = statement.where(CorpusSampleRow.created_at < end)
            if tenant is not None:
                statement = statement.where(CorpusSampleRow.tenant == tenant)
            with self.engine.connect() as conn:
                return decode_vectors([row[0] for row in conn.execute(statement)])
        return await asyncio.to_thread(read)

    # -- references -------------------------------------------------------------------------

    async def save_reference(self, reference: Reference, *, created_by: str,
                             replace: bool = False) -> None:
        """Persist ``reference`` under its name; an existing name needs ``replace=True``."""
        if reference.size == 0:
            raise InputError(f"reference {reference.name!r} would be empty: no logged retrieval "
                             "with a query embedding matches")
        table = DriftReferenceRow.__table__  # type: ignore[attr-defined]
        data = json.dumps({"ids": list(reference.ids),
                           "times": [t.isoformat() for t in reference.times],
                           "scores": {k: list(v) for k, v in reference.scores.items()},
                           "categories": {k: list(v) for k, v in reference.categories.items()}})
        values = {"name": reference.name, "created_at": datetime.now(UTC),
                  "created_by": created_by, "description": reference.description,
                  "tenant": reference.tenant, "window_start": reference.window_start,
                  "window_end": reference.window_end, "size": reference.size,
                  "dimension": int(reference.embeddings.shape[1]),
                  "embeddings": np.asarray(reference.embeddings, dtype=np.float16).tobytes(),
                  "data": data}
        statements: list[Any] = []
        if replace:
            statements.append(delete(table).where(table.c.name == reference.name))
        statements.append(table.insert().values(values))
        try:
            await asyncio.to_thread(self._write, statements)
        except IntegrityError:
            raise InputError(f"a reference named {reference.name!r} exists; pass replace=True "
                             "(CLI: --replace) to overwrite it") from None

    async def load_reference(self, name: str) -> Reference | None:
        def read() -> DriftReferenceRow | None:
            with Session(self.engine) as session:
                return session.get(DriftReferenceRow, name)
        row = await asyncio.to_thread(read)
        if row is None:
            return None
        data = json.loads(row.data)
        vectors = np.frombuffer(row.embeddings, dtype=np.float16).reshape(row.size, row.dimension)
        return Reference(
            name=row.name, ids=tuple(data["ids"]),
            times=tuple(datetime.fromisoformat(t) for t in data["times"]),
            embeddings=vectors.astype(np.float32),
            scores={k: tuple(v) for k, v in data["scores"].items()},
            categories={k: tuple(v) for k, v in data["categories"].items()},
            description=row.description, created_at=row.created_at,
            window_start=row.window_start, window_end=row.window_end, tenant=row.tenant)

    async def list_references(self) -> list[DriftReferenceRow]:
        def read() -> list[DriftReferenceRow]:
            with Session(self.engine) as session:
                statement = select(DriftReferenceRow).order_by(DriftReferenceRow.created_at)  # type: ignore[arg-type]
                return list(session.exec(statement).all())
        return await asyncio.to_thread(read)

    # -- report history ---------------------------------------------------------------------

    async def add_report(self, row: DriftReportRow) -> None:
        table = DriftReportRow.__table__  # type: ignore[attr-defined]
        await asyncio.to_thread(self._write, [table.insert().values(
            period=row.period, reference=row.reference, tenant=row.tenant,
            created_at=row.created_at, status=row.status, magnitude=row.magnitude,
            digest=row.digest)])

    async def report_history(self, reference: str, tenant: str | None,
                             limit: int = 26) -> list[DriftReportRow]:
        def read() -> list[DriftReportRow]:
            statement = select(DriftReportRow).where(
                DriftReportRow.reference == reference)
            statement = statement.where(
                DriftReportRow.tenant.is_(None) if tenant is None  # type: ignore[union-attr]
                else DriftReportRow.tenant == tenant)
            statement = statement.order_by(DriftReportRow.id.desc()).limit(limit)  # type: ignore[union-attr]
            with Session(self.engine) as session:
                return list(reversed(session.exec(statement).all()))
        return await asyncio.to_thread(read)


class QueryLogWriter:
    """Buffers query-log entries and flushes them in batches from a background task, so a
    retrieval never waits on this database. ``close()`` flushes what is left.

    A flush that fails is logged and its entries dropped (the audit trail, not this log, is
    the record of what happened); ``failures`` counts them."""

    def __init__(self, store: DriftStore, *, interval_s: float = 1.0, max_batch: int = 512) -> None:
        self._store = store
        self._interval = interval_s
        self._max_batch = max_batch
        self._pending: list[QueryLogEntry | AnswerScores] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.failures = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="query-log-writer")

    def add(self, entry: QueryLogEntry | AnswerScores) -> None:
        self._pending.append(entry)
        if len(self._pending) >= self._max_batch:
            self._wake.set()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await asyncio.to_thread(self._store.write_entries, batch)
        except (SQLAlchemyError, BackendError) as exc:
            self.failures += len(batch)
            log.error("query log: %d entries not written: %s", len(batch), exc)

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
