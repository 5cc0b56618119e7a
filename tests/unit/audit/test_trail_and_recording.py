"""Audit policy (AuditTrail) and the pure event builders the pipeline records with."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from advanced_rag.config import AuditSettings, PipelineConfig, validate_config
from advanced_rag.errors import ConfigError
from advanced_rag.recording import (
    CallContext,
    config_digest,
    document_events,
    filter_payload,
    hits_payload,
)
from advanced_rag.types import DocumentOutcome, DocumentStatus, Hit, HitScores, MetadataFilter
from compliance.audit import AuditEvent, AuditEventType
from compliance.audit.trail import AuditTrail, query_digest
from compliance.errors import AuditWriteError

CTX = CallContext("alice", "bank-a", "req-1", None)


def test_plain_queries_are_masked_and_say_so() -> None:
    fields = AuditTrail(None).query_fields("call +44 20 7946 0958 re KYC-104")
    assert fields == {"query_chars": 32, "query": "call [REDACTED:phone] re KYC-104",
                      "redacted": {"phone": 1}}
    assert AuditTrail(None, redact_pii=False).query_fields("call +44 20 7946 0958") == {
        "query_chars": 21, "query": "call +44 20 7946 0958"}
    assert AuditTrail(None, redact_kinds=["email"]).query_fields("+44 20 7946 0958")["query"] \
        == "+44 20 7946 0958"


def test_salted_hash_is_an_hmac_and_never_the_text() -> None:
    trail = AuditTrail(None, query_text="salted_hash", query_salt=b"0123456789abcdef")
    fields = trail.query_fields("is jane@example.com a PEP?")
    expected = hmac.new(b"0123456789abcdef", b"is jane@example.com a PEP?",
                        hashlib.sha256).hexdigest()
    assert fields == {"query_chars": 26, "query_hmac_sha256": expected}
    assert query_digest("a", b"salt-one") != query_digest("a", b"salt-two")


def test_policy_errors_name_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="salt"):
        AuditTrail(None, query_text="salted_hash")
    with pytest.raises(ConfigError) as info:
        AuditTrail(None, redact_kinds=["email", "passport"])
    assert info.value.key == "audit.redact_kinds"
    monkeypatch.setenv("ADVANCED_RAG_AUDIT_QUERY_SALT", "short")
    with pytest.raises(ConfigError) as info:
        AuditTrail.from_settings(AuditSettings(query_text="salted_hash"), data_dir="/tmp/x")
    assert info.value.key == "audit.query_salt_env"
    monkeypatch.delenv("ADVANCED_RAG_AUDIT_SIGNING_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        AuditTrail.from_settings(AuditSettings(checkpoint_every=100), data_dir="/tmp/x")
    assert info.value.key == "audit.checkpoint_every"


def test_default_url_is_a_sqlite_file_under_data_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert AuditSettings().resolved_url(str(tmp_path)) == f"sqlite:///{tmp_path / 'audit.db'}"
    assert AuditSettings(url="postgresql+psycopg://u@h/db").resolved_url("x") == \
        "postgresql+psycopg://u@h/db"
    assert validate_config({"audit": {"schema": "audit"}}).audit.db_schema == "audit"
    with pytest.raises(ConfigError) as info:
        validate_config({"audit": {"on_failure": "ignore"}})
    assert info.value.key == "audit.on_failure"


async def test_disabled_trail_records_nothing() -> None:
    trail = AuditTrail.from_settings(AuditSettings(enabled=False), data_dir="/nonexistent")
    assert not trail.enabled
    assert await trail.record([AuditEvent(AuditEventType.RETRIEVAL, "a", {})]) == []
    with pytest.raises(AuditWriteError, match="disabled"):
        _ = trail.store


def test_config_digest_follows_every_setting() -> None:
    base = PipelineConfig()
    assert config_digest(base) == config_digest(PipelineConfig())
    assert config_digest(base) != config_digest(validate_config({"pipeline": {"top_k": 21}}))
    assert config_digest(base) != config_digest(validate_config({"audit": {"redact_pii": False}}))


def test_filter_payload_keeps_only_the_constraints_given() -> None:
    assert filter_payload(None) is None
    spec = MetadataFilter(classifications=("public",), created_after=datetime(2026, 1, 2, tzinfo=UTC),
                          metadata_equals={"owner": "ops"})
    assert filter_payload(spec) == {"classifications": ["public"],
                                    "created_after": "2026-01-02T00:00:00.000000Z",
                                    "metadata_equals": {"owner": "ops"}}


def test_hits_payload_is_columnar_and_omits_signals_never_computed() -> None:
    hits = [Hit("c1", "d1", 3, "text", {}, "src", "internal", HitScores(fused=0.5)),
            Hit("c9", "d2", 1, "text", {}, "src", "internal", HitScores(fused=0.25, rerank=2.0))]
    assert hits_payload(hits) == {"chunk_id": ["c1", "c9"], "doc_id": ["d1", "d2"],
                                  "doc_version": [3, 1],
                                  "scores": {"fused": [0.5, 0.25], "rerank": [None, 2.0]}}
    assert hits_payload([]) == {"chunk_id": [], "doc_id": [], "doc_version": [], "scores": {}}


def test_document_events_map_each_status_and_mask_reasons() -> None:
    outcomes = [DocumentOutcome("a", DocumentStatus.NEW, 1, "h1", ("a#1",)),
                DocumentOutcome("b", DocumentStatus.UPDATED, 2, "h2", ("b#1",)),
                DocumentOutcome("c", DocumentStatus.UNCHANGED, 4, "h3"),
                DocumentOutcome("d", DocumentStatus.FAILED, reason="owner x@y.org refused")]
    kinds = [e.event_type for e in document_events(outcomes, CTX, AuditTrail(None))]
    assert kinds == [AuditEventType.DOCUMENT_INGESTED, AuditEventType.DOCUMENT_UPDATED,
                     AuditEventType.DOCUMENT_SKIPPED, AuditEventType.DOCUMENT_FAILED]
    failed = document_events(outcomes[3:], CTX, AuditTrail(None))[0]
    assert failed.payload["reason"] == "owner [REDACTED:email] refused"
    assert "chunk_ids" not in failed.payload
    assert (failed.actor, failed.tenant, failed.request_id) == ("alice", "bank-a", "req-1")


def test_passwords_in_urls_are_masked_in_the_recorded_config() -> None:
    from advanced_rag.recording import public_config

    secret = "s3cr3t-pw"
    config = validate_config({"audit": {"url": f"postgresql+psycopg://rag_app:{secret}@db/rag"},
                              "milvus": {"uri": f"http://root:{secret}@milvus:19530"}})
    public = public_config(config)
    assert secret not in repr(public)
    assert public["audit"]["url"] == "postgresql+psycopg://rag_app:***@db/rag"
    assert public["milvus"]["uri"] == "http://root:***@milvus:19530"
    other = validate_config({"audit": {"url": "postgresql+psycopg://rag_app:other@db/rag"},
                             "milvus": {"uri": "http://root:other@milvus:19530"}})
    assert config_digest(config) == config_digest(other)  # the digest reveals nothing of it
