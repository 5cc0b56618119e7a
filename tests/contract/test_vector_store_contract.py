"""Every VectorStore honours the same contract (today: Milvus Lite; a server in a later issue)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from advanced_rag.config import MilvusSettings
from advanced_rag.errors import VectorStoreError
from advanced_rag.protocols import SearchRequest, StoredChunk, VectorStore
from advanced_rag.store.filters import compile_filter
from advanced_rag.store.milvus import MilvusStore
from advanced_rag.types import Chunk, Fusion, SearchType

pytestmark = pytest.mark.integration
DIM = 8


@pytest.fixture(params=["milvus-lite"])
async def store(request: pytest.FixtureRequest, milvus_uri: str) -> AsyncIterator[VectorStore]:
    s = MilvusStore(MilvusSettings(uri=milvus_uri, collection="contract"), dimension=DIM)
    await s.open()
    yield s
    await s.close()


def _row(tenant: str, doc: str, version: int, text: str, seed: int, chunk_count: int = 1
         ) -> StoredChunk:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    chunk = Chunk(f"{tenant}-{doc}-{version}-{seed}", doc, version, 0, text, 0, len(text), 3)
    return StoredChunk(chunk, text, tenant, vector / np.linalg.norm(vector), {"k": seed}, "src",
                       "internal", f"hash{version}", 1_700_000_000, chunk_count)


def _request(tenant: str, kind: SearchType, vector: np.ndarray | None, text: str) -> SearchRequest:
    return SearchRequest(tenant, text, vector, kind, 10, compile_filter(tenant), Fusion.RRF, 0.5,
                         60, 50)


async def test_write_version_delete_count(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)
    rows = [_row("a", "d1", 1, "alpha beta", 1), _row("a", "d1", 2, "alpha gamma", 2),
            _row("b", "d1", 1, "alpha delta", 3)]
    assert await store.write(rows) == 3
    versions = await store.stored_versions("a", ["d1", "missing"])
    assert set(versions) == {"d1"}
    assert versions["d1"].version == 2 and versions["d1"].stale
    assert versions["d1"].content_hash == "hash2"
    assert await store.delete_versions("a", "d1", below=2) == 1
    assert not (await store.stored_versions("a", ["d1"]))["d1"].stale
    assert await store.count("a") == 1 and await store.count("b") == 1 and await store.count() == 2
    assert await store.delete_documents("b", ["d1"]) == 1
    assert await store.count("b") == 0 and await store.count("a") == 1


async def test_partial_versions_are_reported_and_deleted_exactly(store: VectorStore) -> None:
    # version 1 complete (1 of 1), version 2 complete (2 of 2), version 3 partial (1 of 3)
    rows = [_row("a", "d1", 1, "one", 1), _row("a", "d1", 2, "two a", 2, 2),
            _row("a", "d1", 2, "two b", 3, 2), _row("a", "d1", 3, "three a", 4, 3),
            _row("a", "d2", 1, "only part", 5, 2)]
    await store.write(rows)
    versions = await store.stored_versions("a", ["d1", "d2"])
    d1, d2 = versions["d1"], versions["d2"]
    assert (d1.version, d1.content_hash, d1.stale, d1.partial) == (2, "hash2", True, (3,))
    assert d1.complete and d1.highest == 3
    assert (d2.version, d2.content_hash, d2.stale, d2.partial) == (0, "", False, (1,))
    assert not d2.complete and d2.highest == 1
    assert await store.delete_versions("a", "d1") == 0  # nothing named, nothing deleted
    assert await store.delete_versions("a", "d1", versions=[3]) == 1
    assert await store.delete_versions("a", "d1", below=2, versions=[7]) == 1
    d1 = (await store.stored_versions("a", ["d1"]))["d1"]
    assert (d1.version, d1.stale, d1.partial) == (2, False, ())
    assert await store.count("a") == 3


async def test_search_is_tenant_scoped_for_every_type(store: VectorStore) -> None:
    rows = [_row("a", f"d{i}", 1, f"shared words number {i}", i) for i in range(3)]
    rows += [_row("b", f"d{i}", 1, f"shared words number {i}", i) for i in range(3)]
    await store.write(rows)
    for kind in SearchType:
        hits = await store.search(_request("a", kind, rows[0].vector, "shared words"))
        assert len(hits) == 3 and {h.chunk_id.split("-")[0] for h in hits} == {"a"}
    dense = await store.search(_request("a", SearchType.DENSE, rows[1].vector, "x"))
    assert dense[0].doc_id == "d1" and dense[0].scores.dense == pytest.approx(1.0, abs=1e-3)
    assert dense[0].metadata == {"k": 1}


async def test_concurrent_searches_match_one_at_a_time_and_stay_in_their_tenant(
        store: VectorStore) -> None:
    """Concurrent searches (which the Milvus store sends together when they share a shape)
    return exactly what the same searches return one at a time, each within its tenant."""
    import asyncio

    rows = [_row(t, f"d{i}", 1, f"shared words number {i} {'even' if i % 2 else 'odd'}", i)
            for t in ("a", "b") for i in range(8)]
    await store.write(rows)
    requests = [_request(t, kind, rows[i].vector, f"number {i} even")
                for t in ("a", "b") for kind in SearchType for i in range(6)]
    alone = [await store.search(r) for r in requests]
    calls_before = store.search_calls if isinstance(store, MilvusStore) else None
    together = await asyncio.gather(*(store.search(r) for r in requests))
    for request, one, many in zip(requests, alone, together, strict=True):
        assert [h.chunk_id for h in one] == [h.chunk_id for h in many]
        for a, b in zip(one, many, strict=True):
            for signal in ("dense", "bm25", "fused"):
                x, y = getattr(a.scores, signal), getattr(b.scores, signal)
                assert (x is None and y is None) or x == pytest.approx(y, abs=1e-5)
        assert {h.tenant for h in many} == {request.tenant}
    if isinstance(store, MilvusStore):  # it coalesced: fewer Milvus calls than searches
        assert calls_before is not None
        assert store.search_calls - calls_before < len(requests)


async def test_closed_store_refuses_calls(milvus_uri: str) -> None:
    s = MilvusStore(MilvusSettings(uri=milvus_uri, collection="closed"), dimension=DIM)
    with pytest.raises(VectorStoreError, match="not open"):
        await s.count()


async def test_dimension_mismatch_is_a_config_error(milvus_uri: str) -> None:
    from advanced_rag.errors import ConfigError

    first = MilvusStore(MilvusSettings(uri=milvus_uri, collection="dims"), dimension=DIM)
    await first.open()
    await first.close()
    second = MilvusStore(MilvusSettings(uri=milvus_uri, collection="dims"), dimension=DIM * 2)
    with pytest.raises(ConfigError, match="8-d vectors"):
        await second.open()
