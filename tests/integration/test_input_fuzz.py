"""Fuzzing what callers hand the library: config files, documents, queries.

Property: only the library's typed errors escape (``ConfigError``; ``InputError`` and its
kin; a ``DocumentError`` per bad document in the ingest report), and nothing is
half-written — every document the report calls ingested has exactly its chunks in the
index, and no other chunk of the tenant exists.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advanced_rag import AdvancedRAGPipeline, ConfigError, Document, InputError
from advanced_rag.config import PipelineConfig, load_config, validate_config
from advanced_rag.types import DocumentStatus

pytestmark = pytest.mark.integration

SECTIONS = list(PipelineConfig.model_fields)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=True), st.text(max_size=20),
                    st.sampled_from(["${HOME}", "${NOPE_NOT_SET}", "${X:-1}", "*", "rrf"]))
trees = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.one_of(st.sampled_from(SECTIONS + ["top_k", "uri", "kind", "fallback"]),
                              st.text(max_size=8)), inner, max_size=4)), max_leaves=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(trees, st.dictionaries(st.sampled_from(SECTIONS), trees, max_size=4)),
       raw=st.one_of(st.none(), st.text(max_size=80)))
def test_config_loader_raises_only_config_errors(tmp_path_factory: pytest.TempPathFactory,
                                                 data: Any, raw: str | None) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.yaml"
    if raw is not None:
        path.write_text(raw, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert str(exc)  # names what is wrong
        return
    assert isinstance(config, PipelineConfig)


def test_config_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("pipeline:\n  top_k: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.yaml:2: pipeline\.top_k"):
        load_config(path)


identifiers = st.one_of(st.text(min_size=0, max_size=12), st.sampled_from(["doc", "a" * 600]),
                        st.integers(), st.none())
texts = st.one_of(st.text(min_size=0, max_size=300), st.binary(max_size=60),
                  st.sampled_from(["valid text about loans. " * 3, "\x00", "\ud800 lone",
                                   "x" * 3000]), st.none(), st.integers())
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                                     st.floats(allow_nan=True, allow_infinity=True)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=5), inner,
                                                                   max_size=3)), max_leaves=6)
metadata = st.one_of(st.dictionaries(st.one_of(st.text(max_size=8), st.integers()),
                                     st.one_of(json_values, st.just({1, 2}), st.just(math.nan)),
                                     max_size=3),
                     st.just({"big": "x" * 70_000}), st.integers(), st.none())
documents = st.builds(
    Document, id=identifiers, text=texts, metadata=metadata,
    source=st.one_of(st.text(max_size=10), st.just("s" * 300), st.integers(), st.none()),
    classification=st.sampled_from(["public", "internal", "restricted", "secret", 3, None]))


valid_documents = st.builds(
    Document, id=st.text(alphabet="abcdefgh-_0123456789", min_size=1, max_size=6),
    text=st.lists(st.sampled_from(["Loans above 250,000 EUR go to the committee.",
                                   "Complaints are acknowledged within three days.",
                                   "Breaches are reported within 72 hours."]),
                  min_size=1, max_size=4).map(" ".join),
    metadata=st.dictionaries(st.sampled_from(["team", "year"]),
                             st.one_of(st.text(max_size=5), st.integers(0, 3000)), max_size=2),
    source=st.sampled_from(["handbook", "", 'a"b']),
    classification=st.sampled_from(["public", "internal", "confidential", "restricted"]))


@pytest.fixture(scope="module")
async def rag(embedder: Any, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[AdvancedRAGPipeline]:
    tmp = tmp_path_factory.mktemp("fuzz")
    config = validate_config({"data_dir": str(tmp), "milvus": {"uri": str(tmp / "m.db")},
                              "chunking": {"max_tokens": 32, "min_tokens": 4},
                              "ingest": {"batch_size": 3, "max_document_chars": 2500,
                                         "max_documents_per_call": 8},
                              "audit": {"sqlite_synchronous": "NORMAL"}})
    async with AdvancedRAGPipeline(config, embedder=embedder) as pipeline:
        yield pipeline


async def test_ingest_fuzz_only_typed_errors_and_nothing_half_written(
        rag: AdvancedRAGPipeline) -> None:
    loop = asyncio.get_running_loop()
    tenants = (f"fuzz-{n}" for n in itertools.count())
    seen = {"ingested": 0, "failed": 0, "refused": 0}

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(batch=st.lists(st.one_of(valid_documents, valid_documents, documents,
                                    st.just("not a document")), max_size=10))
    def check(batch: list[Any]) -> None:
        tenant = next(tenants)

        async def run() -> None:
            try:
                report = await rag.ingest(batch, tenant=tenant)
            except InputError:
                assert len(batch) > rag.config.ingest.max_documents_per_call
                seen["refused"] += 1
                assert await rag.store.count(tenant) == 0  # refused before any write
                return
            stored = {o.doc_id: o for o in report.documents
                      if o.status in (DocumentStatus.NEW, DocumentStatus.UPDATED)}
            assert len(report.documents) == len(batch)
            for failure in report.failed:
                assert failure.reason
            expected = sum(len(o.chunk_ids) for o in stored.values())
            assert await rag.store.count(tenant) == expected
            versions = await rag.store.stored_versions(tenant, list(stored))
            for doc_id, outcome in stored.items():
                assert versions[doc_id].version == outcome.version
                assert versions[doc_id].partial == () and not versions[doc_id].stale
            seen["ingested"] += len(stored)
            seen["failed"] += len(report.failed)

        asyncio.run_coroutine_threadsafe(run(), loop).result(timeout=300)

    await asyncio.to_thread(check)
    assert seen["ingested"] > 20 and seen["failed"] > 50 and seen["refused"] > 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=st.one_of(st.text(max_size=50), st.sampled_from(["", " ", "\x00", "\ud800", "x" * 9000]),
                       st.integers(), st.none()),
       top_k=st.one_of(st.none(), st.integers(-3, 2000), st.booleans(), st.text(max_size=2)))
def test_query_checks_refuse_with_input_errors(query: Any, top_k: Any) -> None:
    from advanced_rag.limits import check_text, check_top_k

    try:
        text = check_text(query, name="the query", max_chars=8192, setting="s")
    except InputError:
        assert (not isinstance(query, str) or not query.strip() or len(query) > 8192
                or "\x00" in query or any(0xD800 <= ord(c) <= 0xDFFF for c in query))
    else:
        assert text == query
    try:
        k = check_top_k(top_k, 20, 1000)
    except InputError:
        assert not (top_k is None or (type(top_k) is int and 1 <= top_k <= 1000))
    else:
        assert k == (20 if top_k is None else top_k)


async def test_hostile_queries_are_refused_and_audited(rag: AdvancedRAGPipeline) -> None:
    from compliance.audit.models import AuditEventType

    before = len(await rag.compliance.query_audit_logs(AuditEventType.RETRIEVAL, limit=100_000))
    for query, top_k in (("x" * 9000, None), ("\ud800", None), ("ok", 5000), ("ok", True),
                         (None, None), ("a\x00b", None)):
        with pytest.raises(InputError):
            await rag.retrieve(query, tenant="fuzz-q", top_k=top_k)  # type: ignore[arg-type]
    events = await rag.compliance.query_audit_logs(AuditEventType.RETRIEVAL, limit=100_000)
    failed = [e for e in events[before:] if e.payload and e.payload["outcome"] == "error"]
    assert len(failed) == 6 and {e.payload["error"] for e in failed if e.payload} == {"InputError"}
