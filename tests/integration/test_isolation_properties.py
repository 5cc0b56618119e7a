"""Tenant isolation and classification clearance, as properties over thousands of requests.

One Milvus Lite index holds documents of three tenants, every classification, and document
ids (and texts) that repeat across tenants. Hypothesis then throws principals, queries and
filter specs at ``retrieve`` — including strings built to break out of a Milvus expression
(quotes, backslashes, ``||``, ``or 1==1``, unicode controls) — and checks that no hit ever
belongs to another tenant or lies above the caller's clearance, and that asking for what
one may not see is refused (and audited), never silently answered.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advanced_rag import (
    AccessDeniedError,
    AdvancedRAGPipeline,
    Classification,
    Document,
    FilterError,
    InputError,
    MetadataFilter,
    Principal,
)
from advanced_rag.access import CLEARANCE_ORDER, readable
from advanced_rag.config import validate_config
from compliance.audit.models import AuditEventType

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TENANTS = ("bank-a", "bank-b", "bank-c")
CLASSES = tuple(c.value for c in CLEARANCE_ORDER)
NASTY = ['"', "\\", '\\"', "'", '" || tenant_id == "bank-b', '") or (1==1', "or 1==1",
         'bank-b" or tenant_id != "', "x\" || true || \"", "]", "[", "\u202e", "ß", "é",
         "\u0000", "\n", "tenant_id", 'classification in ["restricted"]', "*", "%", "$$"]
TOPICS = ["loan approval committee", "customer due diligence", "data breach notification",
          "complaint handling deadline", "cash deposit reporting", "sanctions screening"]


@dataclass
class World:
    rag: AdvancedRAGPipeline
    chunk_owner: dict[str, tuple[str, str]]  # chunk id -> (tenant, classification)
    doc_ids: tuple[str, ...]
    sources: tuple[str, ...]


def _corpus(tenant: str, t: int) -> list[Document]:
    docs = []
    for i in range(12):
        topic = TOPICS[i % len(TOPICS)]
        shared = i < 4  # the same id AND text in every tenant: ids must not collide
        doc_id = f"shared-{i}" if shared else f"{tenant}-{i}"
        text = (f"{topic.capitalize()} policy number {i}. The {topic} rules apply to every "
                f"branch. Escalate questions about {topic} to the compliance office.")
        if not shared:
            text += f" This copy belongs to {tenant}."
        docs.append(Document(
            doc_id, text, metadata={"team": f"team-{i % 3}", "note": NASTY[(i + t) % len(NASTY)]
                                    .replace("\u0000", "")},
            source=f"src-{i % 2}" + ('"q' if i % 5 == 0 else ""),
            classification=Classification(CLASSES[(i + t) % 4])))
    return docs


@pytest.fixture(scope="module")
async def world(embedder: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("isolation")
    config = validate_config({"data_dir": str(tmp), "milvus": {"uri": str(tmp / "m.db")},
                              "chunking": {"max_tokens": 24, "min_tokens": 4},
                              "audit": {"sqlite_synchronous": "NORMAL"},
                              "drift": {"query_log": False, "corpus_sample": 0}})
    owners: dict[str, tuple[str, str]] = {}
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        for t, tenant in enumerate(TENANTS):
            report = await rag.ingest(_corpus(tenant, t), tenant=tenant)
            assert report.failed == ()
            for outcome in report.documents:
                for chunk in outcome.chunk_ids:
                    assert chunk not in owners, "a chunk id was issued to two tenants"
                    owners[chunk] = (tenant, str(outcome.classification))
        for tenant in TENANTS:  # every tenant kept every one of its chunks
            assert await rag.store.count(tenant) == sum(o == tenant for o, _ in owners.values())
        doc_ids = tuple(sorted({d.id for t, tn in enumerate(TENANTS) for d in _corpus(tn, t)}))
        yield World(rag, owners, doc_ids, ("src-0", "src-1", 'src-0"q', 'src-1"q'))


text = st.one_of(st.sampled_from(NASTY), st.text(max_size=24))
strings = st.one_of(st.sampled_from(["src-0", "src-1", 'src-0"q']), text)
values = st.one_of(st.sampled_from(["team-0", "team-1"]), text, st.integers(-5, 5),
                   st.integers(), st.booleans(),
                   st.floats(allow_nan=True, allow_infinity=True))
keys = st.one_of(st.sampled_from(["team", "note", "tenant_id"]), text)


@st.composite
def filters(draw: st.DrawFn, doc_ids: tuple[str, ...]) -> MetadataFilter | None:
    if draw(st.booleans()):
        return None
    maybe = st.one_of(st.none(), st.just(()))
    return MetadataFilter(
        sources=draw(st.one_of(st.none(), st.lists(strings, min_size=1, max_size=3).map(tuple))),
        classifications=draw(st.one_of(st.none(), st.lists(st.sampled_from(CLASSES), min_size=1,
                                                          max_size=4, unique=True).map(tuple))),
        doc_ids=draw(st.one_of(maybe, st.lists(st.one_of(st.sampled_from(doc_ids), text),
                                                min_size=1, max_size=4).map(tuple))),
        metadata_equals=draw(st.dictionaries(keys, values, max_size=2)))


def _above(spec: MetadataFilter | None, clearance: Classification) -> bool:
    return bool(spec and spec.classifications
                and set(spec.classifications) - set(readable(clearance)))


async def test_no_hit_crosses_a_tenant_or_a_clearance(world: World) -> None:
    loop = asyncio.get_running_loop()
    seen = {"answered": 0, "hits": 0, "denied": 0, "refused": 0}

    @settings(max_examples=2000, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(tenant=st.sampled_from(TENANTS), clearance=st.sampled_from(CLEARANCE_ORDER),
           query=st.one_of(st.sampled_from(TOPICS), text.filter(lambda q: q.strip() != "")),
           spec=filters(world.doc_ids),
           search_type=st.sampled_from(["hybrid", "dense", "keyword"]),
           top_k=st.integers(1, 40), other=st.one_of(st.none(), st.sampled_from(TENANTS)))
    def check(tenant: str, clearance: Classification, query: str, spec: MetadataFilter | None,
              search_type: str, top_k: int, other: str | None) -> None:
        principal = Principal(f"user@{tenant}", tenant, clearance=clearance)
        call = world.rag.retrieve(query, principal=principal, filters=spec, top_k=top_k,
                                  search_type=search_type, tenant=other)
        try:
            result = asyncio.run_coroutine_threadsafe(call, loop).result(timeout=120)
        except AccessDeniedError:
            assert _above(spec, clearance) or (other is not None and other != tenant)
            seen["denied"] += 1
            return
        except (FilterError, InputError) as exc:  # a filter we refuse to compile, never a crash
            assert not isinstance(exc, AccessDeniedError)
            seen["refused"] += 1
            return
        assert not _above(spec, clearance) and (other is None or other == tenant)
        allowed = set(readable(clearance))
        for hit in result.hits:
            owner, cls = world.chunk_owner[hit.chunk_id]
            assert owner == tenant, f"{hit.chunk_id} of {owner} served to {tenant}"
            assert cls in allowed and hit.classification in allowed
        seen["answered"] += 1
        seen["hits"] += len(result.hits)

    await asyncio.to_thread(check)
    # the properties were exercised, not vacuously true
    assert seen["answered"] > 500 and seen["hits"] > 2000 and seen["denied"] > 50


async def test_expression_breakouts_find_nothing_of_other_tenants(world: World) -> None:
    """Filter values that spell out another tenant's clause match literally (nothing)."""
    principal = Principal("mallory@bank-a", "bank-a", clearance="restricted")
    for value in ['" || tenant_id == "bank-b', 'bank-b" or tenant_id != "', "x\" || true || \""]:
        for spec in (MetadataFilter(sources=(value,)), MetadataFilter(doc_ids=(value,)),
                     MetadataFilter(metadata_equals={"team": value})):
            result = await world.rag.retrieve("loan approval committee", principal=principal,
                                              filters=spec)
            assert result.hits == ()


async def test_shared_document_ids_stay_apart(world: World) -> None:
    """The same id and text in three tenants: each tenant finds its own copy only."""
    for tenant in TENANTS:
        principal = Principal(f"u@{tenant}", tenant, clearance="restricted")
        result = await world.rag.retrieve("customer due diligence policy number 1",
                                          principal=principal,
                                          filters=MetadataFilter(doc_ids=("shared-1",)))
        assert result.hits and {world.chunk_owner[h.chunk_id][0] for h in result.hits} == {tenant}


async def test_denials_are_audited_with_the_principal(world: World) -> None:
    principal = Principal("eve@bank-c", "bank-c", roles=("analyst",), clearance="public")
    with pytest.raises(AccessDeniedError, match="may not read classification 'restricted'"):
        await world.rag.retrieve("sanctions", principal=principal,
                                 filters=MetadataFilter(classifications=("restricted",)))
    with pytest.raises(AccessDeniedError, match="may not access tenant 'bank-a'"):
        await world.rag.retrieve("sanctions", principal=principal, tenant="bank-a")
    records = await world.rag.compliance.query_audit_logs(AuditEventType.ACCESS_DENIED,
                                                          limit=100_000)
    mine = [r for r in records if r.actor == "eve@bank-c"]
    assert len(mine) == 2
    assert all(r.payload and r.payload["principal"] == {
        "tenant": "bank-c", "roles": ["analyst"], "clearance": "public"} for r in mine)
    assert all(r.tenant is None for r in mine)  # never attributed to the tenant asked for


async def test_clearance_is_part_of_every_search(world: World) -> None:
    for clearance in CLEARANCE_ORDER:
        principal = Principal("u", "bank-b", clearance=clearance)
        seen: set[str] = set()
        for topic in TOPICS:
            result = await world.rag.retrieve(topic, principal=principal, top_k=40,
                                              search_type="keyword")
            seen |= {h.classification for h in result.hits}
        assert seen and seen <= set(readable(clearance))
        if clearance is Classification.RESTRICTED:
            assert seen == set(CLASSES)  # the whole corpus is reachable at the top


def test_floats_in_filters_are_finite_or_refused() -> None:
    from advanced_rag.store.filters import compile_filter

    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(FilterError):
            compile_filter("bank-a", MetadataFilter(metadata_equals={"x": value}))


def test_principal_validation(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        Principal("", "bank-a")
    with pytest.raises(InputError, match="clearance"):
        Principal("a", "bank-a", clearance="secret")
    with pytest.raises(InputError, match="roles"):
        Principal("a", "bank-a", roles="admin")
    assert Principal("a", "bank-a", roles=["x", "x"]).roles == frozenset({"x"})
