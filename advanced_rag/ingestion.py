"""Incremental ingestion: validate, chunk, embed, write; unchanged documents are skipped.

A document's version is an integer that grows by one each time its content hash changes.
New chunks are written before the old version's chunks are deleted, so a reader never
sees a document with no chunks. One bad document is reported and never stops the rest.

Store and embedder calls are retried on transient errors (:class:`Resilience`). A document's
chunks are all in or all out: every row carries its version's chunk count, so a version cut
short by a failed write, a failed clean-up or a crash is recognised as partial; a failed write
is undone at once, and whatever could not be undone is removed by the next ingest of the
document (its new version is numbered above every stored one, partial or not, and the versions
below it are deleted once it is written).

Every document ends with a :class:`DocumentOutcome`; an ``on_batch`` callback receives each
batch's outcomes as soon as that batch is written (the pipeline records them in the audit
trail there, so a crash mid-ingest leaves at most one batch indexed but unrecorded).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from .chunking import chunk_text
from .config import ChunkingSettings, IngestSettings
from .errors import AdvancedRagError, DocumentError, InputError
from .protocols import Embedder, StoredChunk, StoredVersion, VectorStore
from .remote.resilience import Resilience
from .store.milvus import MAX_TEXT_CHARS
from .types import (
    Chunk,
    Classification,
    Document,
    DocumentOutcome,
    DocumentStatus,
    IngestFailure,
    IngestReport,
)

ProgressCallback = Callable[[int], None]
BatchCallback = Callable[[Sequence[DocumentOutcome]], Awaitable[None]]
WrittenCallback = Callable[[Sequence[StoredChunk]], None]
_MAX_ID_CHARS = 512
T = TypeVar("T")


def validate_document(doc: Any, *, max_chars: int, max_bytes: int | None = None,
                      max_metadata_bytes: int = 65_536) -> Document:
    """Return a clean :class:`Document` or raise :class:`DocumentError` naming it.

    Everything a later stage would choke on is refused here, for this document alone: text
    that is not UTF-8 or too long (characters and UTF-8 bytes), metadata that is not a
    mapping of string keys to JSON values (finite numbers) or is over ``max_metadata_bytes``
    as JSON, a source that is not a short string, an unknown classification.
    """
    if not isinstance(doc, Document):
        raise DocumentError(str(getattr(doc, "id", "?")),
                            f"expected a Document, got {type(doc).__name__}")
    doc_id = doc.id
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise DocumentError(str(doc_id), "the document id must be a non-empty string")
    if len(doc_id) > _MAX_ID_CHARS or "\x00" in doc_id:
        raise DocumentError(doc_id[:80], f"the document id must be at most {_MAX_ID_CHARS} "
                                         "characters without NUL")
    text: Any = doc.text
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DocumentError(doc_id, f"text is not valid UTF-8 (byte {exc.start})") from None
    if not isinstance(text, str):
        raise DocumentError(doc_id, f"text must be str or UTF-8 bytes, got {type(text).__name__}")
    if "\x00" in text:
        raise DocumentError(doc_id, "text contains NUL characters")
    if not text.strip():
        raise DocumentError(doc_id, "text is empty")
    if len(text) > max_chars:
        raise DocumentError(doc_id, f"text has {len(text):,} characters, over the limit of "
                                    f"{max_chars:,} (ingest.max_document_chars)")
    if max_bytes is not None:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise DocumentError(doc_id, f"text has {size:,} UTF-8 bytes, over the limit of "
                                        f"{max_bytes:,} (ingest.max_document_bytes)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DocumentError(doc_id, f"text is not encodable as UTF-8 (position {exc.start}: a "
                                    "lone surrogate)") from None
    metadata = _clean_metadata(doc_id, doc.metadata, max_metadata_bytes)
    try:
        classification = Classification(doc.classification)
    except ValueError:
        allowed = ", ".join(c.value for c in Classification)
        raise DocumentError(doc_id,
                            f"classification {doc.classification!r} is not one of {allowed}") from None
    if not isinstance(doc.source, str) or len(doc.source) > 256 or "\x00" in doc.source:
        raise DocumentError(doc_id, "source must be a string of at most 256 characters without "
                                    "NUL")
    return Document(id=doc_id, text=text, metadata=metadata, source=doc.source,
                    classification=classification)


def _clean_metadata(doc_id: str, raw: Any, max_bytes: int) -> dict[str, Any]:
    """A plain dict of the metadata, or :class:`DocumentError` (not a mapping, a key that is
    not a string, a value JSON cannot hold exactly, too large)."""
    if not isinstance(raw, Mapping):
        raise DocumentError(doc_id, f"metadata must be a mapping, got {type(raw).__name__}")
    metadata = dict(raw)
    if not all(isinstance(key, str) for key in metadata):
        raise DocumentError(doc_id, "metadata keys must be strings")
    try:
        encoded = json.dumps(metadata, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:  # sets, datetimes, NaN, circular references...
        raise DocumentError(doc_id, f"metadata is not plain JSON ({exc})") from None
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError:
        raise DocumentError(doc_id, "metadata is not encodable as UTF-8 (a lone surrogate)") from None
    if size > max_bytes:
        raise DocumentError(doc_id, f"metadata is {size:,} bytes as JSON, over the limit of "
                                    f"{max_bytes:,} (ingest.max_metadata_bytes)")
    return metadata


def chunk_header(doc: Document, *, enabled: bool) -> str:
    """The title line put before every chunk of ``doc`` ("" when off or untitled)."""
    title = doc.metadata.get("title") if enabled else None
    if not isinstance(title, str) or not title.strip():
        return ""
    return " ".join(title.split()) + "\n\n"


def indexed_text(header: str, chunk: Chunk) -> str:
    """What is embedded and BM25-indexed for a chunk: header + span, unless the span
    already opens with the title (a Markdown heading, say)."""
    if not header or header.strip().lower() in chunk.text[: len(header) + 8].lower():
        return chunk.text
    return header + chunk.text


@dataclass(frozen=True, slots=True)
class VersionPlan:
    """What an ingest does with one document, given what the store holds of it.

    ``unchanged``: the latest complete version has the same content; ``version`` is that
    version. Otherwise ``version`` is the one to write, above every stored version (complete or
    partial) so that its rows never mix with those of an interrupted attempt, and ``is_update``
    says whether a complete version existed (UPDATED, else NEW). Either way ``clean_below`` and
    ``clean_versions`` name the versions to delete: for a new version once it is written, for
    an unchanged document at once (older versions, partial writes above it).
    """

    version: int
    unchanged: bool = False
    is_update: bool = False
    clean_below: int | None = None
    clean_versions: tuple[int, ...] = ()

    @property
    def cleans(self) -> bool:
        """Whether any version of the document is to be deleted."""
        return self.clean_below is not None or bool(self.clean_versions)


_Chunked = tuple[Document, VersionPlan, list[Chunk], list[str]]  # a document ready to embed


def plan_version(previous: StoredVersion | None, content_hash: str) -> VersionPlan:
    """The :class:`VersionPlan` of a document whose content hash is ``content_hash``."""
    if previous is None:
        return VersionPlan(1)
    if previous.complete and previous.content_hash == content_hash:
        current = previous.version
        older = previous.stale or any(v < current for v in previous.partial)
        return VersionPlan(current, unchanged=True, clean_below=current if older else None,
                           clean_versions=tuple(v for v in previous.partial if v > current))
    version = previous.highest + 1
    return VersionPlan(version, is_update=previous.complete, clean_below=version)


class _Deletes:
    """The deletes of one phase of a batch, each retried on transient errors. Once one fails
    for good the rest are skipped (the store is most likely down, and each would wait out its
    own retries); ``error`` is then the first failure, reported with every affected document."""

    def __init__(self, resilience: Resilience) -> None:
        self._resilience = resilience
        self.error: str | None = None

    async def run(self, what: str, action: Callable[[], Awaitable[int]]) -> int | None:
        """Chunks deleted, or ``None`` when the delete failed or was skipped."""
        if self.error is not None:
            return None
        try:
            return await self._resilience.retry_transient(what, action)
        except AdvancedRagError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return None


@dataclass
class _Tally:
    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[IngestFailure] = field(default_factory=list)
    outcomes: list[DocumentOutcome] = field(default_factory=list)
    chunks_written: int = 0
    chunks_deleted: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def fail(self, doc_id: str, reason: str, doc: Document | None = None) -> None:
        self.failed.append(IngestFailure(doc_id, reason))
        self.outcomes.append(DocumentOutcome(
            doc_id, DocumentStatus.FAILED, reason=reason,
            content_hash=doc.content_hash if doc else None,
            classification=str(doc.classification) if doc else None,
            source=doc.source if doc else None))

    def done(self, doc: Document, status: DocumentStatus, version: int,
             chunk_ids: tuple[str, ...] = (), *, reason: str | None = None) -> None:
        """Record an ingested (or unchanged) document; ``reason`` notes leftover chunks of
        other versions that could not be removed yet (the next ingest removes them)."""
        getattr(self, status.value).append(doc.id)  # the lists are named by status
        self.outcomes.append(DocumentOutcome(
            doc.id, status, version=version, content_hash=doc.content_hash, chunk_ids=chunk_ids,
            classification=str(doc.classification), source=doc.source, reason=reason))

    def timed(self, stage: str, began: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - began


class Ingestor:
    """Runs one ingest over a store and an embedder with the configured limits.

    ``resilience`` retries the embedding, lookups, writes and deletes of each batch on
    transient errors (default: a :class:`Resilience` with default settings).
    """

    def __init__(self, store: VectorStore, embedder: Embedder, chunking: ChunkingSettings,
                 limits: IngestSettings, *, resilience: Resilience | None = None) -> None:
        self._store = store
        self._embedder = embedder
        self._chunking = chunking
        self._limits = limits
        self._resilience = resilience or Resilience()

    async def _retry(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        return await self._resilience.retry_transient(what, action)

    async def ingest(self, documents: Iterable[Document], *, tenant: str,
                     progress: ProgressCallback | None = None,
                     on_batch: BatchCallback | None = None,
                     on_written: WrittenCallback | None = None,
                     now: datetime | None = None) -> IngestReport:
        """Ingest ``documents`` for ``tenant``. An exception raised by ``on_batch`` stops the
        ingest and propagates (documents of earlier batches stay ingested); the time it takes
        is the ``record`` stage of the report. ``on_written`` sees each batch of chunks (with
        their vectors) once the store has them (drift monitoring samples them)."""
        tally = _Tally()
        created_at = int((now or datetime.now(UTC)).timestamp())
        valid: list[Document] = []
        seen: set[str] = set()
        began = time.perf_counter()
        for count, raw in enumerate(documents, start=1):
            if count > self._limits.max_documents_per_call:  # nothing is written yet
                raise InputError(f"more than {self._limits.max_documents_per_call:,} documents "
                                 "in one ingest call (ingest.max_documents_per_call); split it")
            try:
                doc = validate_document(raw, max_chars=self._limits.max_document_chars,
                                        max_bytes=self._limits.max_document_bytes,
                                        max_metadata_bytes=self._limits.max_metadata_bytes)
                if doc.id in seen:
                    raise DocumentError(doc.id, "appears twice in this ingest")
            except DocumentError as exc:
                tally.fail(exc.doc_id, exc.reason)
                if progress:
                    progress(1)
                continue
            seen.add(doc.id)
            valid.append(doc)
        tally.timed("validate", began)
        reported = 0
        if on_batch and tally.outcomes:
            began = time.perf_counter()
            await on_batch(tuple(tally.outcomes))
            tally.timed("record", began)
            reported = len(tally.outcomes)
        size = self._limits.batch_size
        for offset in range(0, len(valid), size):
            batch = valid[offset:offset + size]
            try:
                await self._ingest_batch(batch, tenant, created_at, tally, on_written)
            except AdvancedRagError as exc:
                done = {o.doc_id for o in tally.outcomes[reported:]}
                for d in batch:
                    if d.id not in done:
                        tally.fail(d.id, f"{type(exc).__name__}: {exc}", d)
            if on_batch:
                began = time.perf_counter()
                await on_batch(tuple(tally.outcomes[reported:]))
                tally.timed("record", began)
                reported = len(tally.outcomes)
            if progress:
                progress(len(batch))
        return IngestReport(
            tenant=tenant, new=tuple(tally.new), updated=tuple(tally.updated),
            unchanged=tuple(tally.unchanged), failed=tuple(tally.failed),
            chunks_written=tally.chunks_written, chunks_deleted=tally.chunks_deleted,
            stage_seconds=dict(tally.seconds), documents=tuple(tally.outcomes))

    async def _ingest_batch(self, batch: Sequence[Document], tenant: str, created_at: int,
                            tally: _Tally, on_written: WrittenCallback | None = None) -> None:
        """Ingest one batch. Lookup and embedding failures (after retries) propagate and fail
        the whole batch; a failed write fails it after removing what it wrote; a failed clean-up
        of other versions leaves the document ingested (or unchanged) with a ``reason`` noting
        the leftovers, which the next ingest of the document removes."""
        began = time.perf_counter()
        ids = [d.id for d in batch]
        stored = await self._retry(f"looking up {len(ids)} documents",
                                   partial(self._store.stored_versions, tenant, ids))
        tally.timed("lookup", began)
        todo: list[tuple[Document, VersionPlan]] = []
        leftovers = _Deletes(self._resilience)
        for doc in batch:
            plan = plan_version(stored.get(doc.id), doc.content_hash)
            if not plan.unchanged:
                todo.append((doc, plan))
                continue
            if plan.cleans:  # an earlier run died or failed before its clean-up
                began = time.perf_counter()
                deleted = await leftovers.run(
                    f"removing leftover chunks of {doc.id!r}",
                    partial(self._store.delete_versions, tenant, doc.id, below=plan.clean_below,
                            versions=plan.clean_versions))
                tally.timed("delete", began)
                if deleted is None:  # the complete version is intact: unchanged, with a note
                    tally.done(doc, DocumentStatus.UNCHANGED, plan.version, reason=(
                        f"leftover chunks of older or partly written versions could not be "
                        f"removed ({leftovers.error}); the next ingest of this document removes "
                        "them"))
                    continue
                tally.chunks_deleted += deleted
            tally.done(doc, DocumentStatus.UNCHANGED, plan.version)
        if not todo:
            return
        began = time.perf_counter()
        chunked = await asyncio.to_thread(self._chunk_all, todo, tally, tenant)
        tally.timed("chunk", began)
        if not chunked:
            return
        texts = [t for _, _, _, doc_texts in chunked for t in doc_texts]
        began = time.perf_counter()
        vectors = await self._retry(f"embedding {len(texts)} chunks",
                                    partial(self._embedder.embed_documents, texts))
        tally.timed("embed", began)
        # Every chunk of a document is in this one batch and this one write, so chunk_count is
        # the number of rows its version has once the write succeeds.
        rows: list[StoredChunk] = []
        i = 0
        for doc, _, chunks, chunk_texts in chunked:
            for chunk, text in zip(chunks, chunk_texts, strict=True):
                rows.append(StoredChunk(chunk=chunk, text=text, tenant=tenant, vector=vectors[i],
                                        metadata=doc.metadata, source=doc.source,
                                        classification=str(doc.classification),
                                        content_hash=doc.content_hash, created_at=created_at,
                                        chunk_count=len(chunks)))
                i += 1
        began = time.perf_counter()
        try:
            written_rows = await self._retry(f"writing {len(rows)} chunks",
                                             partial(self._store.write, rows))
        except AdvancedRagError as exc:
            tally.timed("write", began)
            await self._undo_write(chunked, tenant, tally, f"{type(exc).__name__}: {exc}")
            return
        tally.chunks_written += written_rows
        tally.timed("write", began)
        if on_written:
            on_written(rows)
        began = time.perf_counter()
        older = _Deletes(self._resilience)
        for doc, plan, chunks, _ in chunked:
            chunk_ids = tuple(c.chunk_id for c in chunks)
            if plan.cleans:
                deleted = await older.run(
                    f"removing the versions of {doc.id!r} below {plan.version}",
                    partial(self._store.delete_versions, tenant, doc.id, below=plan.clean_below,
                            versions=plan.clean_versions))
                if deleted is None:  # the new version is complete and searchable: ingested
                    tally.done(doc, DocumentStatus.UPDATED if plan.is_update else DocumentStatus.NEW,
                               plan.version, chunk_ids, reason=(
                                   f"the chunks of earlier versions could not be removed yet "
                                   f"({older.error}); the next ingest of this document removes "
                                   "them"))
                    continue
                tally.chunks_deleted += deleted
            tally.done(doc, DocumentStatus.UPDATED if plan.is_update else DocumentStatus.NEW,
                       plan.version, chunk_ids)
        tally.timed("delete", began)

    async def _undo_write(self, chunked: Sequence[_Chunked], tenant: str, tally: _Tally,
                          error: str) -> None:
        """After a write failed for good: delete the rows of the versions it tried to write
        (some may be stored), so no reader sees part of a document, and fail its documents.
        What cannot be deleted stays a partial version, which the next ingest removes."""
        began = time.perf_counter()
        undo = _Deletes(self._resilience)
        for doc, plan, _, _ in chunked:
            removed = await undo.run(f"removing the partly written version {plan.version} of {doc.id!r}",
                                     partial(self._store.delete_versions, tenant, doc.id,
                                             versions=(plan.version,)))
            if removed is None:
                tally.fail(doc.id, f"{error}; chunks of the partly written version {plan.version} "
                                   f"could not be removed ({undo.error}); the next ingest of this "
                                   "document removes them", doc)
            else:
                tally.fail(doc.id, error, doc)
        tally.timed("delete", began)

    def prepare(self, doc: Document, version: int = 1, tenant: str = ""
                ) -> tuple[list[Chunk], list[str]]:
        """The chunks of ``doc`` (their ids include ``tenant``) and the texts that will be
        embedded and indexed for them."""
        settings = self._chunking
        header = chunk_header(doc, enabled=settings.title_prefix)
        header_tokens = self._embedder.count_tokens(header) if header else 0
        if header_tokens > settings.max_tokens // 2:  # too long to repeat on every chunk
            header, header_tokens = "", 0
        budget = settings.max_tokens - header_tokens
        chunks = chunk_text(doc.id, version, doc.text, self._embedder, max_tokens=budget,
                            overlap_tokens=min(settings.overlap_tokens, budget - 1),
                            min_tokens=min(settings.min_tokens, budget), tenant=tenant)
        return chunks, [indexed_text(header, c) for c in chunks]

    def _chunk_all(self, todo: Sequence[tuple[Document, VersionPlan]], tally: _Tally, tenant: str
                   ) -> list[_Chunked]:
        """Chunks and their indexed texts per document; oversize chunks fail their document."""
        out: list[_Chunked] = []
        for doc, plan in todo:
            chunks, texts = self.prepare(doc, plan.version, tenant)
            longest = max(len(t.encode("utf-8")) for t in texts)
            if longest > MAX_TEXT_CHARS:
                tally.fail(doc.id, f"a chunk has {longest:,} bytes, over Milvus's "
                                   f"{MAX_TEXT_CHARS:,}; lower chunking.max_tokens", doc)
                continue
            out.append((doc, plan, chunks, texts))
        return out
