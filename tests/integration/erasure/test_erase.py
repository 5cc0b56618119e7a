"""Erasing a subject: its key is destroyed, its payload fields read as erased, its query-log
rows are gone, the chain still verifies and the erasure is itself audited; legal holds refuse
it; plaintext from before encryption is redacted; the real pipeline and CLI paths work."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from advanced_rag.config import PipelineConfig
from advanced_rag.drift.store import DriftStore, QueryLogEntry
from compliance.audit import AuditEvent, AuditEventType, AuditRecord, verify_export
from compliance.erasure.crypto import ERASED
from compliance.erasure.erase import SubjectHeldError
from compliance.manager import ComplianceManager
from compliance.retention.holds import LegalHolds, subject_ref
from tests.integration.audit.conftest import Backend, _sqlite

from .conftest import KEK_ENV, make_config
from .test_encryption import trail_for

pytestmark = pytest.mark.integration


async def record_history(config: PipelineConfig) -> list[AuditRecord]:
    """Two retrievals and an answer by alice, one retrieval by bob, each retrieval logged."""
    async with trail_for(config) as trail:
        events = [
            AuditEvent("retrieval", "alice", {**trail.query_fields("my salary slip"), "top_k": 5},
                       tenant="bank-a"),
            AuditEvent("generation", "alice", {"answer": "Alice earns 4,200 a month.",
                                               "refused": False}, tenant="bank-a"),
            AuditEvent("retrieval", "bob", {**trail.query_fields("branch hours"), "top_k": 5},
                       tenant="bank-b"),
            AuditEvent("retrieval", "alice", {**trail.query_fields("my overdraft"), "top_k": 5},
                       tenant="bank-a")]
        records = await trail.record(events)
    async with DriftStore.from_config(config) as drift:
        await asyncio.to_thread(drift.write_entries, [
            QueryLogEntry(r.event_id, r.occurred_at, r.tenant or "-", "hybrid",
                          np.full(4, i, dtype=np.float32), hits=5)
            for i, r in enumerate(records) if r.event_type == AuditEventType.RETRIEVAL])
    return records


def logged(backend: Backend) -> list[str]:
    return sorted(r[0] for r in backend.sql("SELECT event_id FROM query_log"))


async def test_erasure_shreds_the_subject_and_keeps_the_chain(backend: Backend,
                                                              config: PipelineConfig,
                                                              tmp_path: Path) -> None:
    records = await record_history(config)
    alice_kid = json.loads(records[0].payload_json or "")["query"]["kid"]
    async with ComplianceManager(config) as cm:
        report = await cm.erase_subject("alice", actor="dpo",
                                        reason="Art. 17 request from alice@example.com")
        assert report.subject_ref == subject_ref("alice") and report.key_ids == (alice_kid,)
        assert (report.events_shredded, report.events_redacted) == (3, 0)
        assert report.query_log_rows_deleted == 2 and report.drift_references == ()

        shown = await cm.query_audit_logs(limit=10)
        assert [r.payload and (r.payload.get("query") or r.payload.get("answer"))
                for r in shown[:4]] == [ERASED, ERASED, "branch hours", ERASED]
        assert shown[0].payload is not None and shown[0].payload["top_k"] == 5  # the rest stays
        assert [r.entry_hash for r in shown[:4]] == [r.entry_hash for r in records]
        verified = await cm.verify_audit_log(record=False)
        assert verified.events_checked == 5 and verified.redacted_events == 0

        erasure = shown[4]
        assert (erasure.event_type, erasure.actor, erasure.event_id) == (
            AuditEventType.ERASURE, "dpo", report.event_id)
        assert erasure.payload is not None and dict(erasure.payload) == {
            "subject_ref": subject_ref("alice"), "outcome": "ok", "key_ids": [alice_kid],
            "keys_destroyed": 1, "events_shredded": 3, "events_redacted": 0,
            "query_log_rows_deleted": 2, "drift_references_with_subject": [],
            "reason": "Art. 17 request from [REDACTED:email]"}
        assert "alice" not in (erasure.payload_json or "")  # named by reference only

        export = tmp_path / "after.jsonl"
        await cm.export_audit_log(export)
        assert verify_export(export).events == 5

        status = await cm.erasure_status("alice")
        assert status.erased and status.events == 3 and status.query_log_rows == 0
        assert [(k.kid, k.destroyed_by) for k in status.keys] == [(alice_kid, "dpo")]

    assert logged(backend) == [records[2].event_id]  # only bob's retrieval is left
    [(material, destroyed_at, by, reason)] = backend.sql(
        "SELECT key_material, destroyed_at, destroyed_by, reason FROM subject_keys "
        "WHERE key_id = ?", (alice_kid,))
    assert material is None and destroyed_at is not None and by == "dpo"
    assert reason == "Art. 17 request from [REDACTED:email]"
    assert backend.sql("SELECT COUNT(*) FROM subject_keys WHERE key_material IS NOT NULL")[0][0] == 1

    async with ComplianceManager(config) as cm:  # erasing again destroys nothing new
        again = await cm.erase_subject("alice", actor="dpo", reason="repeat")
        assert again.key_ids == () and again.query_log_rows_deleted == 0
    async with trail_for(config) as trail:  # alice comes back: a fresh key, readable
        await trail.record([AuditEvent("retrieval", "alice", {"query": "new question"})])
    async with ComplianceManager(config) as cm:
        [*_, new] = await cm.query_audit_logs(AuditEventType.RETRIEVAL, actor="alice")
        assert new.payload is not None and new.payload["query"] == "new question"
        status = await cm.erasure_status("alice")
        assert not status.erased and [k.destroyed for k in status.keys] == [True, False]


async def test_a_writer_with_a_stale_key_cache_writes_nothing_readable(
        config: PipelineConfig) -> None:
    async with trail_for(config) as writer:  # a long-running pipeline process
        await writer.record([AuditEvent("retrieval", "alice", {"query": "first"})])
        async with ComplianceManager(config) as cm:  # erased from another process
            await cm.erase_subject("alice", actor="dpo", reason="request")
        # within the cache lifetime the writer still encrypts under the destroyed key: what it
        # writes is unreadable at once (shredded with the rest), never stored in plaintext
        await writer.record([AuditEvent("retrieval", "alice", {"query": "second"})])
    async with ComplianceManager(config) as cm:
        shown = await cm.query_audit_logs(AuditEventType.RETRIEVAL)
    assert [r.payload and r.payload["query"] for r in shown] == [ERASED, ERASED]


async def test_legal_holds_refuse_erasure_until_released(backend: Backend,
                                                         config: PipelineConfig) -> None:
    await record_history(config)
    holds = await LegalHolds.open(config)
    try:
        person = await holds.place("subject", subject="alice", reason="DSAR dispute",
                                   actor="legal")
        tenant = await holds.place("tenant", tenant="bank-a", reason="SEC inquiry", actor="legal")
        window = await holds.place("time_range", start=datetime.now(UTC) - timedelta(days=1),
                                   end=datetime.now(UTC) + timedelta(days=1), tenant="bank-b",
                                   reason="audit of this week", actor="legal")
        async with ComplianceManager(config) as cm:
            with pytest.raises(SubjectHeldError, match=f"legal hold {person.id} on subject") as exc:
                await cm.erase_subject("alice", actor="dpo", reason="request")
            assert exc.value.hold == person
            await holds.release(person.id, actor="legal", reason="resolved")
            with pytest.raises(SubjectHeldError, match=f"{tenant.id} on tenant bank-a"):
                await cm.erase_subject("alice", actor="dpo", reason="request")
            with pytest.raises(SubjectHeldError, match=window.id):  # bob's events: bank-b, now
                await cm.erase_subject("bob", actor="dpo", reason="request")
            status = await cm.erasure_status("alice")
            assert [h.id for h in status.holds] == [tenant.id] and not status.erased

            # nothing was destroyed or deleted, and each refusal was recorded
            [alice_q, *_] = await cm.query_audit_logs(AuditEventType.RETRIEVAL, actor="alice")
            assert alice_q.payload is not None and alice_q.payload["query"] == "my salary slip"
            assert len(logged(backend)) == 3
            refusals = await cm.query_audit_logs(AuditEventType.ERASURE)
            assert [(r.payload or {}).get("hold_id") for r in refusals] == [
                person.id, tenant.id, window.id]
            assert {(r.payload or {}).get("outcome") for r in refusals} == {"refused"}

            await holds.release(tenant.id, actor="legal", reason="closed")
            report = await cm.erase_subject("alice", actor="dpo", reason="request")
            assert len(report.key_ids) == 1 and report.query_log_rows_deleted == 2
    finally:
        await holds.close()


async def test_plaintext_from_before_encryption_is_redacted(backend: Backend,
                                                            config: PipelineConfig,
                                                            tmp_path: Path) -> None:
    before = make_config(backend, tmp_path, encrypt_personal_data=False)
    async with trail_for(before) as trail:
        await trail.record([AuditEvent("retrieval", "alice", {"query": "old plaintext"}),
                            AuditEvent("retrieval", "bob", {"query": "bob's plaintext"})])
    async with trail_for(config) as trail:
        await trail.record([AuditEvent("retrieval", "alice", {"query": "encrypted"})])
    async with ComplianceManager(config) as cm:
        report = await cm.erase_subject("alice", actor="dpo", reason="request")
        assert (report.events_shredded, report.events_redacted) == (1, 1)
        first, second, third, _ = await cm.query_audit_logs()
        assert first.redacted and first.payload is None
        assert second.payload is not None and second.payload["query"] == "bob's plaintext"
        assert third.payload is not None and third.payload["query"] == ERASED
        assert (await cm.verify_audit_log(record=False)).redacted_events == 1
    assert "old plaintext" not in str(backend.sql("SELECT payload FROM audit_events"))


async def test_pipeline_retrievals_are_erased_with_their_query_log(
        embedder: object, tmp_path: Path, kek: bytes) -> None:
    from advanced_rag import AdvancedRAGPipeline, Document
    from advanced_rag.config import validate_config

    config = validate_config({"data_dir": str(tmp_path), "milvus": {"uri": str(tmp_path / "m.db")},
                              "chunking": {"max_tokens": 64, "min_tokens": 4},
                              "erasure": {"key_encryption_key_env": KEK_ENV}})
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:  # type: ignore[arg-type]
        await rag.ingest([Document("loans", "Loans above 250,000 euros go to the committee."),
                          Document("hours", "Branches open at nine and close at five.")],
                         tenant="bank-a")
        await rag.retrieve("who approves my 300,000 euro loan", tenant="bank-a", actor="alice")
        await rag.retrieve("when does my branch open", tenant="bank-a", actor="alice")
        await rag.retrieve("branch opening hours", tenant="bank-a", actor="bob")
        [first, *_] = await rag.compliance.query_audit_logs(AuditEventType.RETRIEVAL)
        assert first.payload is not None
        assert first.payload["query"] == "who approves my 300,000 euro loan"
        assert "300,000" not in (first.payload_json or "")
    async with DriftStore.from_config(config) as drift:
        assert await drift.count_log() == 3
        async with ComplianceManager(config) as cm:
            report = await cm.erase_subject("alice", actor="dpo", reason="request")
            shown = await cm.query_audit_logs(AuditEventType.RETRIEVAL)
            assert await cm.verify_audit_log(record=False)
        assert report.query_log_rows_deleted == 2 and await drift.count_log() == 1
    assert [r.payload and r.payload["query"] for r in shown] == [ERASED, ERASED,
                                                                 "branch opening hours"]


def test_cli_erase_and_status(tmp_path: Path, kek: bytes,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from advanced_rag.cli import main

    config = make_config(_sqlite(tmp_path), tmp_path)
    asyncio.run(record_history(config))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", by_alias=True)), encoding="utf-8")
    base = ["--config", str(path), "--json"]

    assert main(["erasure", "status", "alice", *base]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["erased"], status["events"], status["query_log_rows"]) == (False, 3, 2)
    assert main(["erasure", "erase", "alice", "--reason", "ticket 77", *base]) == 2  # no --yes
    assert "pass --yes" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["erasure", "erase", "alice", *base])  # --reason is required
    assert usage.value.code == 2

    async def hold() -> str:
        holds = await LegalHolds.open(config)
        try:
            return (await holds.place("subject", subject="alice", reason="dispute",
                                      actor="legal")).id
        finally:
            await holds.close()
    held = asyncio.run(hold())
    assert main(["erasure", "erase", "alice", "--reason", "ticket 77", "--yes", *base]) == 1
    refused = json.loads(capsys.readouterr().out)
    assert refused["refused"] and refused["hold_id"] == held

    assert main(["erasure", "erase", "bob", "--reason", "ticket 78", "--yes", "--actor", "dpo",
                 *base]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["ok"] and len(done["key_ids"]) == 1 and done["query_log_rows_deleted"] == 1
    assert main(["erasure", "status", "bob", *base]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["erased"] and status["keys"][0]["destroyed_by"] == "dpo"
    assert main(["audit", "tail", "-n", "10", "--config", str(path)]) == 0
    tail = capsys.readouterr().out
    assert "my salary slip" in tail and "branch hours" not in tail and ERASED in tail
    assert main(["erasure", "keygen"]) == 0
    assert len(__import__("base64").b64decode(capsys.readouterr().out.strip())) == 32
