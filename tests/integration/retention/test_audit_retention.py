"""Retention of the audit chain on real SQLite and PostgreSQL databases, with a frozen policy
clock: redaction, pruning behind a signed prune point, legal holds, dry runs, and tampering
after pruning (rows edited and deleted behind the library's back)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from advanced_rag.errors import InputError
from compliance.audit import (
    AuditEvent,
    AuditEventType,
    AuditRecord,
    CheckpointSigner,
    export_jsonl,
    verify_chain,
    verify_export,
)
from compliance.errors import AuditIntegrityError, AuditWriteError, RetentionError
from compliance.manager import ComplianceManager
from compliance.retention.job import run_retention
from tests.integration.audit.conftest import Backend

from .conftest import NOW, Db

pytestmark = pytest.mark.integration
KEEP = {"legal_floor_days": 183, "audit_events": {"keep_days": 200, "action": "redact"}}


def db_errors() -> tuple[type[Exception], ...]:
    import sqlite3

    import psycopg

    return sqlite3.Error, psycopg.Error


async def seed(db: Db, rows: list[tuple[int, str, str | None, dict[str, Any]]]) -> list[AuditRecord]:
    """Events ``(days before NOW, actor, tenant, payload)`` in this order."""
    async with db.backend.store() as store:
        return await store.append_many([
            AuditEvent(AuditEventType.DOCUMENT_INGESTED if "doc_id" in payload
                       else AuditEventType.RETRIEVAL, actor, payload, tenant=tenant,
                       occurred_at=NOW - timedelta(days=days))
            for days, actor, tenant, payload in rows])


def payloads(db: Db) -> dict[int, str | None]:
    return {int(seq): payload for seq, payload in db.sql(
        "SELECT seq, payload FROM audit_events ORDER BY seq")}


async def retention_events(cm: ComplianceManager) -> list[AuditRecord]:
    return await cm.query_audit_logs(event_type=AuditEventType.RETENTION, limit=1000)


async def test_redaction_skips_held_recent_and_redacted_events(db: Db) -> None:
    config = db.config(KEEP)
    records = await seed(db, [
        (400, "alice", "bank-a", {"query": "alice's old question"}),       # 1 due
        (400, "bob@example.com", "bank-a", {"query": "bob's question"}),   # 2 subject hold
        (300, "svc", "bank-h", {"query": "held tenant"}),                  # 3 tenant hold
        (300, "svc", "bank-b", {"doc_id": "kyc-1"}),                       # 4 document hold
        (250, "svc", "bank-c", {"query": "in the held window"}),           # 5 time-range hold
        (390, "svc", "bank-c", {"query": "already redacted"}),             # 6 skipped
        (10, "svc", "bank-a", {"query": "recent"}),                        # 7 too recent
    ])
    async with ComplianceManager(config) as cm:
        await cm.store.redact_payload(6)
        subject = await cm.place_legal_hold("subject", subject="bob@example.com",
                                            reason="DSAR dispute 12", actor="legal")
        tenant = await cm.place_legal_hold("tenant", tenant="bank-h", reason="SEC inquiry 7",
                                           actor="legal")
        document = await cm.place_legal_hold("document", tenant="bank-b", doc_id="kyc-1",
                                             reason="litigation hold", actor="legal")
        window = await cm.place_legal_hold("time_range", start=NOW - timedelta(days=260),
                                           end=NOW - timedelta(days=240), reason="audit of Q1",
                                           actor="legal")
        before = db.dump()
        dry = await cm.enforce_retention_policy(now=NOW, dry_run=True, actor="ops")
        assert db.dump() == before  # a dry run writes nothing, not even an audit event
        plan = dry.plan.get("audit_events")
        assert plan is not None and plan.action == "redact"
        assert (plan.candidates, plan.selected, plan.skipped) == (6, 1, 1)
        assert plan.cutoff == NOW - timedelta(days=200)
        assert {h.hold_id: h.records for h in plan.held} == {
            subject.id: 1, tenant.id: 1, document.id: 1, window.id: 1}
        assert "SEC inquiry 7" in next(h.description for h in plan.held if h.hold_id == tenant.id)

        result = await cm.enforce_retention_policy(now=NOW, actor="ops")
        after = payloads(db)
        assert after[1] is None and after[6] is None
        assert all(after[seq] == records[seq - 1].payload_json for seq in (2, 3, 4, 5, 7))
        assert result.ok and {o.record_class: o.done for o in result.outcomes}["audit_events"] == 1
        report = await verify_chain(cm.store)
        assert report.redacted_events == 2 and report.pruned_through is None

        plan_event, outcome_event = await retention_events(cm)
        assert plan_event.actor == outcome_event.actor == "ops"
        assert outcome_event.parent_event_id == plan_event.event_id == result.plan_event_id
        assert plan_event.payload is not None and outcome_event.payload is not None
        assert plan_event.payload["phase"] == "plan"
        audit_plan = plan_event.payload["classes"][0]
        assert audit_plan["record_class"] == "audit_events" and audit_plan["selected"] == 1
        assert {h["hold_id"] for h in audit_plan["held"]} == {subject.id, tenant.id, document.id,
                                                              window.id}
        assert "alice's old question" not in plan_event.payload_json  # counts, never the data
        assert outcome_event.payload["classes"][-1] == {
            "record_class": "audit_events", "action": "redact", "done": 1, "error": None}

        # Released, the subject's event goes at the next run.
        await cm.release_legal_hold(subject.id, reason="dispute settled", actor="legal")
        await cm.enforce_retention_policy(now=NOW, actor="ops")
        assert payloads(db)[2] is None and payloads(db)[3] is not None
        await verify_chain(cm.store)
        holds = await cm.query_audit_logs(event_type=AuditEventType.LEGAL_HOLD, limit=100)
        assert [(h.payload or {}).get("action") for h in holds] == ["placed"] * 4 + ["released"]
        assert holds[0].payload is not None
        assert holds[0].payload["subject_ref"] == subject.subject_ref
        assert "bob@example.com" not in json.dumps([h.payload_json for h in holds])
        assert holds[-1].payload is not None and holds[-1].payload["reason"] == "dispute settled"
        assert holds[-1].actor == "legal"


async def pruned_chain(db: Db, key_file: tuple[Path, CheckpointSigner], tmp_path: Path,
                       ) -> tuple[ComplianceManager, Any]:
    """Nine events: 1-3 due, 4 due but held, 5 due, 6-9 recent; then one pruning run."""
    path, _ = key_file
    config = db.config({**KEEP, "audit_events": {"keep_days": 200, "action": "prune"}},
                       audit={"signing_key_file": str(path), "anchor": str(tmp_path / "anchor")})
    await seed(db, [(400, "svc", "bank-a", {"i": 1}), (399, "svc", "bank-a", {"i": 2}),
                    (398, "svc", "bank-a", {"i": 3}), (397, "svc", "bank-h", {"i": 4}),
                    (396, "svc", "bank-a", {"i": 5}), (5, "svc", "bank-a", {"i": 6}),
                    (4, "svc", "bank-a", {"i": 7}), (3, "svc", "bank-a", {"i": 8}),
                    (2, "svc", "bank-a", {"i": 9})])
    cm = ComplianceManager(config)
    hold = await cm.place_legal_hold("tenant", tenant="bank-h", reason="SEC 9", actor="legal")
    result = await cm.enforce_retention_policy(now=NOW, actor="ops")
    return cm, (result, hold)


async def test_pruning_writes_a_signed_prune_point_and_verification_starts_there(
        db: Db, key_file: tuple[Path, CheckpointSigner], tmp_path: Path) -> None:
    _, signer = key_file
    cm, (result, hold) = await pruned_chain(db, key_file, tmp_path)
    try:
        plan = result.plan.get("audit_events")
        assert (plan.prune_through, plan.redact_instead, plan.selected) == (3, 1, 4)
        assert [h.hold_id for h in plan.held] == [hold.id]
        assert any("seq 4 is held" in note for note in plan.notes)
        point = result.prune_point
        assert point is not None and point.through_seq == 3 and point.key_id == signer.key_id
        assert [seq for (seq,) in db.sql("SELECT seq FROM audit_events ORDER BY seq")][:3] == \
            [4, 5, 6]
        assert payloads(db)[5] is None and payloads(db)[4] is not None  # redacted instead
        assert db.sql("SELECT through_seq, entry_hash, key_id FROM audit_prunes") == [
            (3, point.entry_hash, signer.key_id)]
        anchor = tmp_path / "anchor"
        report = await verify_chain(cm.store, public_key=signer.public_key_hex, anchor=anchor)
        assert (report.pruned_through, report.first_seq) == (3, 4)
        assert report.signatures_checked >= 1 and report.anchor_lines_checked >= 1
        outcome = (await retention_events(cm))[-1]
        assert outcome.payload is not None
        assert outcome.payload["prune_point"]["through_seq"] == 3
        assert outcome.payload["prune_point"]["entry_hash"] == point.entry_hash

        # The database itself allows deleting only what a prune point covers.
        with pytest.raises(db_errors(), match="prune point"):
            db.sql("DELETE FROM audit_events WHERE seq = 4")
        row5 = db.sql("SELECT entry_hash FROM audit_events WHERE seq = 5")[0][0]
        insert = ("INSERT INTO audit_prunes (through_seq, entry_hash, created_at, signature, "
                  "key_id, public_key) VALUES (?, ?, ?, 'ab', 'cd', 'ef')")
        with pytest.raises(db_errors(), match="entry_hash is not the chain hash"):
            db.sql(insert, (5, "00" * 32, "2026-01-01 00:00:00.000000"))
        with pytest.raises(db_errors(), match="only move forward"):
            db.sql(insert, (2, row5, "2026-01-01 00:00:00.000000"))
        with pytest.raises(db_errors(), match="append-only"):
            db.sql("UPDATE audit_prunes SET through_seq = 5")
        with pytest.raises(db_errors(), match="append-only"):
            db.sql("DELETE FROM audit_prunes")

        # Export after pruning starts after the prune point and re-verifies offline.
        export = await export_jsonl(cm.store, tmp_path / "export.jsonl",
                                    public_key=signer.public_key_hex)
        assert export.first_seq == 4 and verify_export(tmp_path / "export.jsonl").first_seq == 4

        # Hold released: the next run prunes through the newest due event, a second point.
        await cm.release_legal_hold(hold.id, reason="closed", actor="legal")
        again = await cm.enforce_retention_policy(now=NOW, actor="ops")
        assert again.prune_point is not None and again.prune_point.through_seq == 5
        report = await verify_chain(cm.store, public_key=signer.public_key_hex, anchor=anchor)
        assert (report.pruned_through, report.first_seq) == (5, 6)
        assert report.last_seq == (await cm.store.head()).seq
    finally:
        await cm.close()


@pytest.mark.parametrize("attack", ["edit", "delete_first", "forge_point", "other_key"])
async def test_tampering_after_pruning_is_detected(db: Db, key_file: tuple[Path, CheckpointSigner],
                                                   tmp_path: Path, attack: str) -> None:
    _, signer = key_file
    cm, _ = await pruned_chain(db, key_file, tmp_path)
    try:
        await verify_chain(cm.store, public_key=signer.public_key_hex)
        db.backend.drop_guards()
        trusted: Any = signer.public_key_hex
        if attack == "edit":
            db.sql("UPDATE audit_events SET actor = 'mallory' WHERE seq = 7")
            seq, reason = 7, "entry hash mismatch"
        elif attack == "delete_first":  # the row that links to the signed hash
            db.sql("DELETE FROM audit_events WHERE seq = 4")
            seq, reason = 4, "row missing"
        elif attack == "forge_point":  # claim more was pruned, with a made-up signature
            db.sql("DELETE FROM audit_events WHERE seq <= 5")
            row = db.sql("SELECT entry_hash FROM audit_events WHERE seq = 5")
            assert row == []
            hash6 = db.sql("SELECT prev_hash FROM audit_events WHERE seq = 6")[0][0]
            db.sql("INSERT INTO audit_prunes (through_seq, entry_hash, created_at, signature, "
                   "key_id, public_key) SELECT 5, ?, created_at, signature, key_id, public_key "
                   "FROM audit_prunes", (hash6,))
            seq, reason = 5, "prune point signature invalid"
        else:  # a prune point signed by the attacker's own key: untrusted when a key is pinned
            mallory = CheckpointSigner.generate()
            db.sql("DELETE FROM audit_events WHERE seq <= 5")
            hash6 = db.sql("SELECT prev_hash FROM audit_events WHERE seq = 6")[0][0]
            forged = mallory.sign(5, hash6, NOW)
            created = (forged.created_at.strftime("%Y-%m-%d %H:%M:%S.%f") if db.name == "sqlite"
                       else forged.created_at)
            db.sql("INSERT INTO audit_prunes (through_seq, entry_hash, created_at, signature, "
                   "key_id, public_key) VALUES (5, ?, ?, ?, ?, ?)",
                   (hash6, created, forged.signature, forged.key_id, mallory.public_key_hex))
            seq, reason = 5, "untrusted key"
        with pytest.raises(AuditIntegrityError, match=reason) as info:
            await verify_chain(cm.store, public_key=trusted)
        assert info.value.seq == seq
    finally:
        await cm.close()


async def test_pruning_without_a_signing_key_is_refused(db: Db, monkeypatch: pytest.MonkeyPatch,
                                                        ) -> None:
    monkeypatch.delenv("ADVANCED_RAG_AUDIT_SIGNING_KEY", raising=False)
    config = db.config({**KEEP, "audit_events": {"keep_days": 200, "action": "prune"}})
    await seed(db, [(400, "svc", None, {"i": 1}), (1, "svc", None, {"i": 2})])
    before = db.dump()
    with pytest.raises(RetentionError, match="signing key.*use action: redact"):
        await run_retention(config, now=NOW)
    async with ComplianceManager(config) as cm:
        with pytest.raises(RetentionError, match="signing key"):
            await cm.enforce_retention_policy(now=NOW, dry_run=True)
        with pytest.raises(InputError, match="naive"):
            await cm.enforce_retention_policy(now=NOW.replace(tzinfo=None))
    assert db.dump() == before


async def test_guards_of_an_older_database_are_upgraded_by_the_owner(tmp_path: Path) -> None:
    """A SQLite database installed before pruning existed (DELETE refused outright)."""
    backend = Backend("sqlite", f"sqlite:///{tmp_path / 'audit.db'}")
    async with backend.store() as store:
        await store.append_many([AuditEvent("retrieval", "svc", {"i": i}) for i in range(4)])
    backend.sql("DROP TRIGGER audit_events_delete_guard")
    backend.sql("CREATE TRIGGER audit_events_delete_guard BEFORE DELETE ON audit_events BEGIN "
                "SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused'); END")
    with pytest.raises(AuditWriteError, match="audit_events_delete_guard"):
        await backend.store(create=False).open()
    signer = CheckpointSigner.generate()
    async with backend.store(signer=signer) as store:  # the owner's open replaces it
        await store.prune(2)
        assert (await verify_chain(store, public_key=signer.public_key_hex)).first_seq == 3
    async with backend.store(create=False):
        pass
