"""The optional query cache: hits skip the store, writes invalidate, keys keep tenants and
clearances apart, errors fail open, and every served request is still audited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from advanced_rag import AdvancedRAGPipeline, Document, MetadataFilter, Principal
from advanced_rag.cache import TTLCache
from advanced_rag.config import validate_config
from advanced_rag.protocols import SearchRequest
from advanced_rag.store.milvus import MilvusStore
from advanced_rag.types import Hit
from compliance.audit.models import AuditEventType

pytestmark = pytest.mark.integration


class CountingStore(MilvusStore):
    """The real Milvus Lite store, counting the searches that reach it."""

    searches = 0

    async def search(self, request: SearchRequest) -> list[Hit]:
        self.searches += 1
        return await super().search(request)


class CountingEmbedder:
    def __init__(self, inner: Any) -> None:
        self.inner, self.queries = inner, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def embed_query(self, text: str) -> Any:
        self.queries += 1
        return await self.inner.embed_query(text)


DOCS = [Document("loans", "Loans above 250,000 EUR are approved by the credit committee.",
                 classification="internal"),
        Document("breach", "Data breaches are reported to the regulator within 72 hours.",
                 classification="restricted")]


@pytest.fixture
async def rag(embedder: Any, tmp_path: Path) -> AsyncIterator[AdvancedRAGPipeline]:
    config = validate_config({"data_dir": str(tmp_path), "milvus": {"uri": str(tmp_path / "m.db")},
                              "cache": {"enabled": True, "ttl_s": 0.5},
                              "chunking": {"max_tokens": 64, "min_tokens": 4}})
    store = CountingStore(config.milvus, dimension=embedder.dimension)
    async with AdvancedRAGPipeline(config, embedder=CountingEmbedder(embedder),
                                   store=store) as pipeline:
        await pipeline.ingest(DOCS, tenant="bank-a")
        await pipeline.ingest(DOCS, tenant="bank-b")
        yield pipeline


def _store(rag: AdvancedRAGPipeline) -> CountingStore:
    store = rag.store
    assert isinstance(store, CountingStore)
    return store


async def test_a_repeated_query_is_served_from_the_cache_and_audited(
        rag: AdvancedRAGPipeline) -> None:
    first = await rag.retrieve("who approves large loans", tenant="bank-a")
    second = await rag.retrieve("who approves large loans", tenant="bank-a")
    assert second.hits == first.hits and _store(rag).searches == 1
    assert rag.embedder.queries == 1  # type: ignore[attr-defined]
    events = await rag.compliance.query_audit_logs(AuditEventType.RETRIEVAL)
    assert len(events) == 2
    assert "cache" not in (events[0].payload or {}) and events[1].payload["cache"] == "hit"  # type: ignore[index]
    assert events[1].payload["results"] == events[0].payload["results"]  # type: ignore[index]


async def test_keys_keep_tenants_filters_and_clearances_apart(rag: AdvancedRAGPipeline) -> None:
    query = "breach reporting deadline"
    await rag.retrieve(query, tenant="bank-a")
    await rag.retrieve(query, tenant="bank-b")
    await rag.retrieve(query, tenant="bank-a", filters=MetadataFilter(doc_ids=("loans",)))
    low = await rag.retrieve(query, principal=Principal("u", "bank-a", clearance="internal"))
    assert _store(rag).searches == 4
    assert {h.doc_id for h in low.hits} == {"loans"}  # the restricted doc never leaks via cache
    assert rag.embedder.queries == 1  # type: ignore[attr-defined]  # one text, one embedding


async def test_ingest_invalidates_and_ttl_expires(rag: AdvancedRAGPipeline) -> None:
    await rag.retrieve("sanctions screening", tenant="bank-a")
    await rag.ingest([Document("sanctions", "Sanctions screening runs on every payment.")],
                     tenant="bank-a")
    fresh = await rag.retrieve("sanctions screening", tenant="bank-a")
    assert fresh.hits[0].doc_id == "sanctions" and _store(rag).searches == 2
    await rag.retrieve("sanctions screening", tenant="bank-b")  # another tenant: untouched
    await rag.retrieve("sanctions screening", tenant="bank-b")
    assert _store(rag).searches == 3
    await asyncio.sleep(0.6)  # ttl_s 0.5: writes by other processes are seen after it
    await rag.retrieve("sanctions screening", tenant="bank-b")
    assert _store(rag).searches == 4
    await rag.delete_documents(["sanctions"], tenant="bank-a")
    after = await rag.retrieve("sanctions screening", tenant="bank-a")
    assert "sanctions" not in {h.doc_id for h in after.hits}


async def test_a_broken_cache_fails_open(rag: AdvancedRAGPipeline,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: TTLCache[Any], key: Any) -> Any:
        raise RuntimeError("cache backend down")

    monkeypatch.setattr(TTLCache, "get", broken)
    monkeypatch.setattr(TTLCache, "put", broken)
    for _ in range(2):
        result = await rag.retrieve("who approves large loans", tenant="bank-a")
        assert result.hits[0].doc_id == "loans"
    assert _store(rag).searches == 2


def test_ttl_cache_evicts_least_recent_and_expires() -> None:
    now = [0.0]
    cache: TTLCache[int] = TTLCache(ttl_s=10, max_entries=2, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    now[0] = 10.0
    assert cache.get("a") is None and len(cache) == 1
    assert (cache.hits, cache.misses) == (3, 2)
