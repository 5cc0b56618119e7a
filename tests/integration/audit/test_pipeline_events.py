"""The pipeline records every call in the audit store (SQLite and PostgreSQL): what, for whom,
with which config and models, and what came back; failures, refusals and lost writes too."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from advanced_rag import (
    AccessDeniedError,
    AdvancedRAGPipeline,
    Document,
    MetadataFilter,
    TenantError,
)
from advanced_rag.config import PipelineConfig, validate_config
from advanced_rag.errors import FilterError, InputError
from advanced_rag.recording import config_digest
from compliance.audit import AuditEventType, AuditRecord, verify_chain
from compliance.audit.trail import query_digest
from compliance.errors import AuditWriteError

from .conftest import Backend

pytestmark = pytest.mark.integration

KYC = Document("kyc-1", "Enhanced due diligence is required for politically exposed persons. "
                        "The compliance officer approves every EDD file within five days.",
               metadata={"title": "KYC policy"}, source="handbook")
COMPLAINTS = Document("complaints", "Complaints are acknowledged within two business days and "
                                    "resolved within fifteen business days.", source="handbook")


def make_config(tmp_path: Path, backend: Backend, **audit: Any) -> PipelineConfig:
    return validate_config({
        "data_dir": str(tmp_path), "milvus": {"uri": str(tmp_path / "milvus.db")},
        "chunking": {"max_tokens": 64, "min_tokens": 4},
        "audit": {"url": backend.url, "schema": backend.schema, **audit},
        "access": {"actor_tenants": {"alice": ["bank-a"], "ops": ["*"]}}})


@pytest.fixture
async def rag(embedder, tmp_path: Path, backend: Backend  # type: ignore[no-untyped-def]
              ) -> AsyncIterator[AdvancedRAGPipeline]:
    async with AdvancedRAGPipeline(make_config(tmp_path, backend), embedder=embedder) as pipeline:
        yield pipeline


async def events(rag: AdvancedRAGPipeline, kind: AuditEventType | None = None,
                 **filters: Any) -> list[AuditRecord]:
    return await rag.compliance.query_audit_logs(event_type=kind, limit=1000, **filters)


async def test_open_records_config_and_model(rag: AdvancedRAGPipeline) -> None:
    [config] = await events(rag, AuditEventType.CONFIG_LOADED)
    assert config.payload is not None
    assert config.payload["config_sha256"] == config_digest(rag.config)
    assert config.payload["config"]["audit"]["on_failure"] == "fail_closed"
    models = await events(rag, AuditEventType.MODEL_LOADED)
    assert [m.payload["role"] for m in models if m.payload] == ["embedder", "judge",
                                                                 "retrieval_risk"]
    model = models[0]
    assert model.payload is not None
    assert model.payload["weights_sha256"] == rag.embedder.identity.sha256
    assert len(model.payload["weights_sha256"]) == 64
    assert model.payload["session"] == config.event_id  # every later event names its session
    from importlib import resources

    packaged = resources.files("advanced_rag.scoring").joinpath("models", "feature_judge_v1.json")
    assert models[1].payload is not None  # the judge: the SHA-256 of its fitted coefficients
    assert models[1].payload["weights_sha256"] == hashlib.sha256(packaged.read_bytes()).hexdigest()
    risk = resources.files("advanced_rag.scoring").joinpath("models", "retrieval_risk_v1.json")
    assert models[2].payload is not None
    assert models[2].payload["weights_sha256"] == hashlib.sha256(risk.read_bytes()).hexdigest()


async def test_ingest_records_each_document_with_version_hash_and_chunks(
        rag: AdvancedRAGPipeline) -> None:
    report = await rag.ingest([KYC, COMPLAINTS, Document("empty", "  ")], tenant="bank-a",
                              actor="alice", request_id="batch-7")
    ingested = await events(rag, AuditEventType.DOCUMENT_INGESTED)
    assert {e.payload["doc_id"] for e in ingested if e.payload} == {"kyc-1", "complaints"}
    kyc = next(e for e in ingested if e.payload and e.payload["doc_id"] == "kyc-1")
    outcome = next(o for o in report.documents if o.doc_id == "kyc-1")
    assert kyc.payload is not None
    assert kyc.payload["version"] == 1 and kyc.payload["content_sha256"] == KYC.content_hash
    assert kyc.payload["chunk_ids"] == list(outcome.chunk_ids) and outcome.chunk_ids
    assert (kyc.actor, kyc.tenant, kyc.request_id) == ("alice", "bank-a", "batch-7")
    [failed] = await events(rag, AuditEventType.DOCUMENT_FAILED)
    assert failed.payload is not None and failed.payload["doc_id"] == "empty"
    assert "empty" in failed.payload["reason"]

    await rag.ingest([KYC], tenant="bank-a", actor="alice")
    [skipped] = await events(rag, AuditEventType.DOCUMENT_SKIPPED)
    assert skipped.payload is not None and skipped.payload["version"] == 1
    changed = Document(KYC.id, KYC.text + " Reviews happen yearly.", metadata=KYC.metadata)
    await rag.ingest([changed], tenant="bank-a", actor="alice")
    [updated] = await events(rag, AuditEventType.DOCUMENT_UPDATED)
    assert updated.payload is not None
    assert updated.payload["version"] == 2
    assert updated.payload["content_sha256"] == changed.content_hash

    assert await rag.delete_documents(["complaints"], tenant="bank-a", actor="alice") > 0
    [deleted] = await events(rag, AuditEventType.DOCUMENT_DELETED)
    assert deleted.payload is not None and deleted.payload["doc_ids"] == ["complaints"]
    startup = 4  # config_loaded, model_loaded for the embedder, the judge and the risk model
    assert (await verify_chain(rag.compliance.store)).events_checked == startup + 3 + 1 + 1 + 1


async def test_retrieval_event_names_query_parameters_and_every_returned_chunk(
        rag: AdvancedRAGPipeline) -> None:
    await rag.ingest([KYC, COMPLAINTS], tenant="bank-a", actor="alice")
    spec = MetadataFilter(sources=("handbook",))
    hits, metrics = await rag.retrieve("Who approves EDD files? Mail jane.doe@bank.example",
                                       tenant="bank-a", filters=spec, actor="alice",
                                       request_id="req-1")
    [event] = await events(rag, AuditEventType.RETRIEVAL)
    payload = event.payload
    assert payload is not None
    assert payload["query"] == "Who approves EDD files? Mail [REDACTED:email]"
    assert payload["redacted"] == {"email": 1}
    assert "jane.doe" not in (event.payload_json or "")
    assert payload["search_type"] == "hybrid" and payload["top_k"] == rag.config.pipeline.top_k
    assert payload["filters"] == {"sources": ["handbook"]}
    assert payload["fusion"] == {"method": "weighted", "alpha": 0.2, "rrf_k": 60,
                                 "candidate_limit": 100}
    results = payload["results"]
    assert results["chunk_id"] == [h.chunk_id for h in hits] and len(hits) == 2
    assert results["doc_id"] == [h.doc_id for h in hits]
    assert results["doc_version"] == [h.doc_version for h in hits]
    assert results["scores"] == {"fused": [h.scores.fused for h in hits]}
    assert payload["outcome"] == "ok" and set(payload["latency_ms"]) == {"embed", "search", "risk"}
    assert (event.actor, event.tenant, event.request_id) == ("alice", "bank-a", "req-1")
    assert "audit" in metrics.stage_ms  # the commit is part of the call's latency


async def test_failed_retrieval_is_recorded_then_raised(rag: AdvancedRAGPipeline) -> None:
    with pytest.raises(FilterError):
        await rag.retrieve("anything", tenant="bank-a", actor="alice",
                           filters=MetadataFilter(metadata_equals={"bad key!": 1}))
    [event] = await events(rag, AuditEventType.RETRIEVAL)
    assert event.payload is not None
    assert (event.payload["outcome"], event.payload["error"]) == ("error", "FilterError")
    assert event.payload["query"] == "anything" and event.payload["latency_ms"] >= 0


async def test_refused_tenants_are_recorded_as_access_denied(rag: AdvancedRAGPipeline) -> None:
    with pytest.raises(AccessDeniedError, match="may not access"):
        await rag.retrieve("edd", tenant="bank-b", actor="alice")
    with pytest.raises(AccessDeniedError, match="may not access"):
        await rag.ingest([KYC], tenant="bank-a", actor="mallory")
    with pytest.raises(TenantError, match="not allowed"):
        await rag.retrieve("edd", tenant='x" or 1==1', actor="ops")
    denied = await events(rag, AuditEventType.ACCESS_DENIED)
    assert [(e.actor, e.payload["operation"], e.payload["requested_tenant"])
            for e in denied if e.payload] == [("alice", "retrieve", "bank-b"),
                                              ("mallory", "ingest", "bank-a"),
                                              ("ops", "retrieve", 'x" or 1==1')]
    assert all(e.tenant is None for e in denied)  # never attributed to the tenant asked for
    assert await events(rag, AuditEventType.RETRIEVAL) == []
    assert (await rag.retrieve("edd", tenant="bank-z", actor="ops")).tenant == "bank-z"


async def test_salted_hash_keeps_the_query_text_out(embedder, tmp_path: Path, backend: Backend,  # type: ignore[no-untyped-def]
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    salt = "s3cret-salt-for-tests-only"
    monkeypatch.setenv("ADVANCED_RAG_AUDIT_QUERY_SALT", salt)
    config = make_config(tmp_path, backend, query_text="salted_hash")
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        await rag.ingest([KYC], tenant="bank-a", actor="alice")
        await rag.retrieve("politically exposed persons", tenant="bank-a", actor="alice")
        [event] = await events(rag, AuditEventType.RETRIEVAL)
    assert event.payload is not None and "query" not in event.payload
    assert event.payload["query_hmac_sha256"] == query_digest("politically exposed persons",
                                                             salt.encode())
    assert "politically" not in (event.payload_json or "")


async def _break(backend: Backend) -> None:
    """The audit database loses its chain-head table behind the library's back."""
    backend.sql("ALTER TABLE audit_head RENAME TO audit_head_gone")


async def test_fail_closed_returns_nothing_when_the_event_cannot_be_written(
        rag: AdvancedRAGPipeline, backend: Backend) -> None:
    await rag.ingest([KYC], tenant="bank-a", actor="alice")
    await _break(backend)
    with pytest.raises(AuditWriteError):
        await rag.retrieve("edd", tenant="bank-a", actor="alice")
    with pytest.raises(AuditWriteError, match="indexed but unrecorded: \\['complaints'\\]"):
        await rag.ingest([COMPLAINTS], tenant="bank-a", actor="alice")


async def test_fail_open_returns_the_result_and_counts_the_loss(
        embedder, tmp_path: Path, backend: Backend) -> None:  # type: ignore[no-untyped-def]
    config = make_config(tmp_path, backend, on_failure="fail_open")
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        await rag.ingest([KYC], tenant="bank-a", actor="alice")
        await _break(backend)
        hits, _ = await rag.retrieve("edd", tenant="bank-a", actor="alice")
        assert hits and hits[0].doc_id == "kyc-1"
        assert rag.compliance._trail.dropped == 1


async def test_verification_is_itself_audited(rag: AdvancedRAGPipeline) -> None:
    await rag.ingest([KYC], tenant="bank-a", actor="alice")
    report = await rag.compliance.verify_audit_log(actor="auditor")
    [event] = await events(rag, AuditEventType.AUDIT_VERIFIED)
    assert event.actor == "auditor" and event.payload is not None
    assert event.payload["outcome"] == "ok"
    assert event.payload["events_checked"] == report.events_checked == event.seq - 1
    assert await events(rag, actor="auditor") == [event]


async def test_query_audit_logs_filters_by_type_tenant_actor_and_time(
        rag: AdvancedRAGPipeline) -> None:
    began = datetime.now(UTC)
    await rag.retrieve("edd", tenant="bank-a", actor="alice")
    await rag.retrieve("edd", tenant="bank-z", actor="ops")
    cm = rag.compliance
    assert [e.actor for e in await cm.query_audit_logs(AuditEventType.RETRIEVAL,
                                                       tenant="bank-a")] == ["alice"]
    assert [e.tenant for e in await cm.query_audit_logs(AuditEventType.RETRIEVAL, actor="ops",
                                                        start_time=began)] == ["bank-z"]
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert await cm.query_audit_logs(AuditEventType.RETRIEVAL, start_time=later) == []
    newest = await cm.query_audit_logs(limit=1, newest_first=True)
    assert newest[0].actor == "ops"
    with pytest.raises(InputError, match="naive"):
        await cm.query_audit_logs(start_time=datetime(2026, 1, 1))
    with pytest.raises(InputError, match="actor"):
        await rag.retrieve("edd", tenant="bank-a", actor="")
