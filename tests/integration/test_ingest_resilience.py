"""Batch ingest resilience on a real Milvus Lite with the packaged MiniLM embedder.

Faults are injected by thin wrappers around the real store and embedder: a failing write may
first upsert a prefix of its rows for real (a genuine partial write), and a failing delete
leaves those rows in place. Back-off sleeps are recorded instead of waited.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from advanced_rag.config import ChunkingSettings, IngestSettings, MilvusSettings
from advanced_rag.errors import EmbedderError, VectorStoreError
from advanced_rag.ingestion import Ingestor
from advanced_rag.protocols import SearchRequest, StoredChunk, StoredVersion, VectorStore
from advanced_rag.remote.resilience import Resilience
from advanced_rag.store.filters import compile_filter
from advanced_rag.store.milvus import MAX_TEXT_CHARS, MilvusStore
from advanced_rag.types import (
    Document,
    DocumentStatus,
    Fusion,
    Hit,
    IngestReport,
    MetadataFilter,
    SearchType,
)

pytestmark = pytest.mark.integration
TENANT = "bank"
CHUNKING = ChunkingSettings(max_tokens=48, min_tokens=4)


def _doc(doc_id: str, topic: str, n: int = 4) -> Document:
    """A document of ``n`` sentences about ``topic`` (several chunks at 48 tokens)."""
    sentences = [f"Rule {i} of the {topic} policy says that every {topic} file is reviewed by a "
                 f"second officer within {i + 2} business days before it is closed." for i in range(n)]
    return Document(doc_id, " ".join(sentences), {"title": f"{topic} policy"}, "handbook")


class Sleeps:
    """A fake ``asyncio.sleep`` that records the back-off instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class FaultyStore:
    """The real :class:`MilvusStore` with injected, retriable failures.

    ``fail_writes``: that many next writes fail. ``fail_docs``: every write holding a row of
    these documents fails. With ``half_write`` a failing write first upserts, for real, the
    first half of each document's rows, so each is left partial. ``fail_deletes``: every
    ``delete_versions`` fails (nothing deleted).
    """

    def __init__(self, inner: MilvusStore) -> None:
        self.inner = inner
        self.fail_writes = 0
        self.fail_docs: set[str] = set()
        self.half_write = False
        self.fail_deletes = False
        self.calls: Counter[str] = Counter()

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def stored_versions(self, tenant: str, doc_ids: Sequence[str]) -> dict[str, StoredVersion]:
        self.calls["stored_versions"] += 1
        return await self.inner.stored_versions(tenant, doc_ids)

    async def write(self, rows: Sequence[StoredChunk]) -> int:
        self.calls["write"] += 1
        failing = self.fail_writes > 0 or any(r.chunk.doc_id in self.fail_docs for r in rows)
        if not failing:
            return await self.inner.write(rows)
        self.fail_writes = max(0, self.fail_writes - 1)
        if self.half_write:  # a real partial write
            assert all(r.chunk_count >= 2 for r in rows)  # so that half is partial
            await self.inner.write([r for r in rows if r.chunk.position < r.chunk_count // 2])
        self.calls["write_failed"] += 1
        raise VectorStoreError("Milvus upsert failed: connection reset (injected)", retriable=True)

    async def delete_versions(self, tenant: str, doc_id: str, *, below: int | None = None,
                              versions: Sequence[int] = ()) -> int:
        self.calls["delete_versions"] += 1
        if self.fail_deletes:
            self.calls["delete_failed"] += 1
            raise VectorStoreError("Milvus delete failed: service unavailable (injected)",
                                   retriable=True)
        return await self.inner.delete_versions(tenant, doc_id, below=below, versions=versions)

    async def delete_documents(self, tenant: str, doc_ids: Sequence[str]) -> int:
        return await self.inner.delete_documents(tenant, doc_ids)

    async def search(self, request: SearchRequest) -> list[Hit]:
        return await self.inner.search(request)

    async def count(self, tenant: str | None = None) -> int:
        return await self.inner.count(tenant)


class FlakyEmbedder:
    """The real embedder whose first ``failures`` document embeddings fail transiently."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    @property
    def identity(self) -> Any:
        return self.inner.identity

    @property
    def dimension(self) -> int:
        return int(self.inner.dimension)

    def count_tokens(self, text: str) -> int:
        return int(self.inner.count_tokens(text))

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise EmbedderError("embedding failed: timeout (injected)", retriable=True)
        result: np.ndarray = await self.inner.embed_documents(texts)
        return result

    async def embed_query(self, text: str) -> np.ndarray:
        result: np.ndarray = await self.inner.embed_query(text)
        return result


@pytest.fixture
async def store(embedder: Any, milvus_uri: str) -> AsyncIterator[FaultyStore]:
    s = FaultyStore(MilvusStore(MilvusSettings(uri=milvus_uri, collection="resilience"),
                                dimension=embedder.dimension))
    await s.open()
    yield s
    await s.close()


def _ingestor(store: VectorStore, embedder: Any, sleeps: Sleeps, batch_size: int = 2) -> Ingestor:
    return Ingestor(store, embedder, CHUNKING, IngestSettings(batch_size=batch_size),
                    resilience=Resilience(sleep=sleeps))


def _by_id(report: IngestReport) -> dict[str, Any]:
    return {o.doc_id: o for o in report.documents}


async def _hits(store: VectorStore, embedder: Any, doc_id: str) -> list[Hit]:
    """Every chunk of ``doc_id`` a dense search can return (limit far above its chunks)."""
    vector = await embedder.embed_query("policy review by a second officer")
    expr = compile_filter(TENANT, MetadataFilter(doc_ids=(doc_id,)))
    return await store.search(SearchRequest(TENANT, "policy", vector, SearchType.DENSE, 100, expr,
                                            Fusion.RRF, 0.5, 60, 100))


async def _assert_whole(store: VectorStore, embedder: Any, doc_id: str, version: int,
                        chunk_ids: Sequence[str]) -> None:
    """The store holds exactly ``chunk_ids`` of ``doc_id``, all of ``version``, complete."""
    stored = (await store.stored_versions(TENANT, [doc_id]))[doc_id]
    assert (stored.version, stored.stale, stored.partial) == (version, False, ())
    hits = await _hits(store, embedder, doc_id)
    assert sorted(h.chunk_id for h in hits) == sorted(chunk_ids)
    assert {h.doc_version for h in hits} == {version}


async def test_transient_embedding_failure_is_retried(store: FaultyStore, embedder: Any) -> None:
    sleeps = Sleeps()
    flaky = FlakyEmbedder(embedder, failures=2)
    docs = [_doc("kyc", "due diligence"), _doc("loans", "credit"), _doc("fees", "fee")]
    report = await _ingestor(store, flaky, sleeps).ingest(docs, tenant=TENANT)
    assert report.ok and sorted(report.new) == ["fees", "kyc", "loans"]
    assert flaky.calls == 4 and len(sleeps.waits) == 2  # two failures, then the two batches
    outcomes = _by_id(report)
    assert await store.count(TENANT) == report.chunks_written == sum(
        len(o.chunk_ids) for o in outcomes.values())
    for doc in docs:
        await _assert_whole(store, embedder, doc.id, 1, outcomes[doc.id].chunk_ids)


async def test_transient_write_failure_is_retried(store: FaultyStore, embedder: Any) -> None:
    sleeps = Sleeps()
    store.fail_writes, store.half_write = 2, True  # two attempts each leave half the rows
    docs = [_doc("kyc", "due diligence"), _doc("loans", "credit")]
    report = await _ingestor(store, embedder, sleeps).ingest(docs, tenant=TENANT)
    assert report.ok and sorted(report.new) == ["kyc", "loans"]
    assert store.calls["write"] == 3 and len(sleeps.waits) == 2
    outcomes = _by_id(report)
    assert await store.count(TENANT) == sum(len(o.chunk_ids) for o in outcomes.values())
    for doc in docs:  # the retried upsert rewrote the same chunk ids: no duplicates
        await _assert_whole(store, embedder, doc.id, 1, outcomes[doc.id].chunk_ids)


async def test_a_batch_that_keeps_failing_is_undone_and_the_rest_ingested(
        store: FaultyStore, embedder: Any) -> None:
    sleeps = Sleeps()
    ingestor = _ingestor(store, embedder, sleeps)
    old_kyc = _doc("kyc", "due diligence", 2)
    first = await ingestor.ingest([old_kyc], tenant=TENANT)
    kyc_v1 = _by_id(first)["kyc"].chunk_ids
    store.fail_docs, store.half_write = {"loans"}, True
    docs = [_doc("kyc", "enhanced due diligence"), _doc("loans", "credit"),
            _doc("fees", "fee"), _doc("cards", "card")]
    report = await ingestor.ingest(docs, tenant=TENANT)
    outcomes = _by_id(report)
    assert {o.doc_id for o in report.failed} == {"kyc", "loans"}  # the first batch
    for doc_id in ("kyc", "loans"):
        assert outcomes[doc_id].status is DocumentStatus.FAILED
        assert outcomes[doc_id].reason == ("VectorStoreError: Milvus upsert failed: connection "
                                           "reset (injected)")
    assert sorted(report.new) == ["cards", "fees"]
    assert store.calls["write_failed"] == 3  # every attempt of the first batch (attempts = 3)
    # undone: the half-written new kyc version and loans are gone; kyc v1 is intact
    await _assert_whole(store, embedder, "kyc", 1, kyc_v1)
    assert await store.stored_versions(TENANT, ["loans"]) == {}
    assert await store.count(TENANT) == len(kyc_v1) + sum(
        len(outcomes[d].chunk_ids) for d in ("fees", "cards"))


async def test_partial_write_and_failed_undo_are_repaired_by_the_next_ingest(
        store: FaultyStore, embedder: Any) -> None:
    sleeps = Sleeps()
    old = [_doc("kyc", "due diligence", 3), _doc("loans", "credit", 3)]
    first = await _ingestor(store, embedder, sleeps).ingest(old, tenant=TENANT)
    v1 = {o.doc_id: o.chunk_ids for o in first.documents}
    # one batch fails for good after half-writing each document, and its undo fails too:
    # kyc and loans are updates, fees is new
    store.fail_writes, store.half_write, store.fail_deletes = 3, True, True
    failing = [_doc("kyc", "enhanced due diligence", 3), _doc("loans", "mortgage", 3),
               _doc("fees", "fee", 4)]
    report = await _ingestor(store, embedder, sleeps, batch_size=3).ingest(failing, tenant=TENANT)
    assert {f.doc_id for f in report.failed} == {"kyc", "loans", "fees"}
    assert all("the next ingest of this document removes them" in f.reason for f in report.failed)
    assert store.calls["delete_failed"] == 3  # the first undo, retried; the rest not attempted
    stored = await store.stored_versions(TENANT, ["kyc", "loans", "fees"])
    assert stored["kyc"] == StoredVersion("kyc", 1, old[0].content_hash, partial=(2,))
    assert stored["loans"] == StoredVersion("loans", 1, old[1].content_hash, partial=(2,))
    assert stored["fees"] == StoredVersion("fees", 0, "", partial=(1,))  # nothing complete

    # a fresh ingestor on the healthy store repairs everything: kyc changed, loans resubmitted
    # as it was (its partial v2 above the complete v1 goes), fees new
    store.fail_writes, store.fail_deletes = 0, False
    repair = [failing[0], old[1], failing[2]]
    fixed = await _ingestor(store, embedder, Sleeps(), batch_size=3).ingest(repair, tenant=TENANT)
    outcomes = _by_id(fixed)
    assert fixed.ok and fixed.updated == ("kyc",) and fixed.unchanged == ("loans",)
    assert fixed.new == ("fees",)
    # new versions are numbered above the partial ones, so their rows never mix
    assert outcomes["kyc"].version == 3 and outcomes["fees"].version == 2
    await _assert_whole(store, embedder, "kyc", 3, outcomes["kyc"].chunk_ids)
    await _assert_whole(store, embedder, "loans", 1, v1["loans"])
    await _assert_whole(store, embedder, "fees", 2, outcomes["fees"].chunk_ids)
    total = sum(len(outcomes[d].chunk_ids) for d in ("kyc", "fees")) + len(v1["loans"])
    assert await store.count(TENANT) == total


async def test_failed_clean_up_after_a_write_is_reported_and_repaired(
        store: FaultyStore, embedder: Any) -> None:
    sleeps = Sleeps()
    await _ingestor(store, embedder, sleeps).ingest([_doc("kyc", "due diligence")], tenant=TENANT)
    store.fail_deletes = True
    changed = _doc("kyc", "enhanced due diligence")
    report = await _ingestor(store, embedder, sleeps).ingest([changed], tenant=TENANT)
    outcome = _by_id(report)["kyc"]
    # the new version is complete and searchable: updated, with a note that the old remains
    assert outcome.status is DocumentStatus.UPDATED and outcome.version == 2 and outcome.chunk_ids
    assert "earlier versions could not be removed yet" in (outcome.reason or "")
    assert report.updated == ("kyc",) and report.failed == ()
    stored = (await store.stored_versions(TENANT, ["kyc"]))["kyc"]
    assert (stored.version, stored.stale, stored.partial) == (2, True, ())
    # resubmitted while deletes still fail: unchanged, with the leftovers noted
    still = _by_id(await _ingestor(store, embedder, sleeps).ingest([changed], tenant=TENANT))["kyc"]
    assert still.status is DocumentStatus.UNCHANGED and still.version == 2 and not still.chunk_ids
    assert "leftover chunks" in (still.reason or "")
    store.fail_deletes = False
    again = await _ingestor(store, embedder, sleeps).ingest([changed], tenant=TENANT)
    assert again.unchanged == ("kyc",) and again.chunks_deleted > 0 and again.chunks_written == 0
    await _assert_whole(store, embedder, "kyc", 2, outcome.chunk_ids)
    assert await store.count(TENANT) == len(outcome.chunk_ids)


def _create_legacy_collection(uri: str, name: str, dimension: int) -> None:
    """The collection schema as created before rows carried ``chunk_count``."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    client = MilvusClient(uri)
    try:
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("chunk_id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=512)
        schema.add_field("doc_version", DataType.INT64)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("tenant_id", DataType.VARCHAR, max_length=64, is_partition_key=True)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_CHARS, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard", "filter": ["lowercase"]})
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("source", DataType.VARCHAR, max_length=256)
        schema.add_field("classification", DataType.VARCHAR, max_length=32)
        schema.add_field("created_at", DataType.INT64)
        schema.add_field("sparse_bm25", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="text_bm25", function_type=FunctionType.BM25,
                                     input_field_names=["text"], output_field_names=["sparse_bm25"]))
        index = client.prepare_index_params()
        index.add_index("dense", index_type="HNSW", metric_type="COSINE",
                        params={"M": 16, "efConstruction": 200})
        index.add_index("sparse_bm25", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        client.create_collection(name, schema=schema, index_params=index)
    finally:
        client.close()


async def test_legacy_collection_without_chunk_count(embedder: Any, tmp_path: Path) -> None:
    uri = str(tmp_path / "legacy.db")
    _create_legacy_collection(uri, "legacy", embedder.dimension)
    store = MilvusStore(MilvusSettings(uri=uri, collection="legacy"), dimension=embedder.dimension)
    await store.open()
    try:
        sleeps = Sleeps()
        docs = [_doc("kyc", "due diligence"), _doc("loans", "credit")]
        first = await _ingestor(store, embedder, sleeps).ingest(docs, tenant=TENANT)
        assert first.ok and sorted(first.new) == ["kyc", "loans"]
        again = await _ingestor(store, embedder, sleeps).ingest(docs, tenant=TENANT)
        assert sorted(again.unchanged) == ["kyc", "loans"]
        update = await _ingestor(store, embedder, sleeps).ingest(
            [_doc("kyc", "enhanced due diligence")], tenant=TENANT)
        assert update.updated == ("kyc",)
        versions = await store.stored_versions(TENANT, ["kyc", "loans"])
        assert versions["kyc"] == StoredVersion("kyc", 2, update.documents[0].content_hash or "")
        assert versions["loans"].version == 1 and versions["loans"].partial == ()
        await _assert_whole(store, embedder, "kyc", 2, update.documents[0].chunk_ids)
        fields = {f["name"] for f in store._sync.describe_collection("legacy")["fields"]}
        assert "chunk_count" not in fields  # the old schema was kept, not migrated
    finally:
        await store.close()
