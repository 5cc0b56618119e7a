"""Value types, errors, the public API and checkpoint signing (no database)."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import compliance.audit as audit
from advanced_rag.errors import AdvancedRagError, InputError
from compliance.audit import AuditEvent, AuditEventType, CheckpointSigner
from compliance.audit.checkpoints import (
    append_anchor,
    checkpoint_message,
    key_id_of,
    load_public_key,
    read_anchor,
    signature_valid,
)
from compliance.audit.hashing import canonical_json
from compliance.audit.models import AuditRecord, new_event_id
from compliance.errors import (
    AuditIntegrityError,
    AuditWriteError,
    ComplianceError,
    RetentionError,
)


def test_public_api_is_pinned() -> None:
    assert sorted(audit.__all__) == sorted([
        "AuditEvent", "AuditEventType", "AuditRecord", "AuditStore", "AuditTrail", "ChainHead",
        "Checkpoint", "CheckpointSigner", "ExportCheck", "ExportReport", "Redaction",
        "VerificationReport", "export_jsonl", "redact_payload", "redact_text", "verify_chain",
        "verify_export"])
    for name in audit.__all__:
        assert getattr(audit, name) is not None
    import compliance

    assert sorted(compliance.__all__) == ["AuditIntegrityError", "AuditWriteError",
                                          "ComplianceError", "ComplianceManager", "RetentionError"]
    for name in compliance.__all__:
        assert getattr(compliance, name) is not None


def test_error_tree() -> None:
    for cls in (AuditIntegrityError, AuditWriteError, RetentionError):
        assert issubclass(cls, ComplianceError)
    assert issubclass(ComplianceError, AdvancedRagError)
    error = AuditIntegrityError(42, "aa", "bb", "entry hash mismatch")
    assert (error.seq, error.expected, error.actual, error.reason) == (42, "aa", "bb",
                                                                     "entry hash mismatch")
    assert str(error).startswith("audit chain broken at seq 42: entry hash mismatch")


def test_event_types_are_lowercase_snake_values() -> None:
    required = {"CONFIG_LOADED", "MODEL_LOADED", "DOCUMENT_INGESTED", "DOCUMENT_UPDATED",
                "DOCUMENT_SKIPPED", "DOCUMENT_FAILED", "DOCUMENT_DELETED", "RETRIEVAL", "RERANK",
                "ACCESS_DENIED", "AUDIT_VERIFIED", "CHECKPOINT", "GENERATION", "SCORING",
                "DRIFT_REPORT", "RETENTION", "ERASURE", "LEGAL_HOLD",
                "JOB_STARTED", "JOB_FINISHED", "JOB_FAILED", "COMPLIANCE_REPORT"}
    assert required <= set(AuditEventType.__members__)
    for member in AuditEventType:
        assert member.value == member.name.lower()


def test_event_defaults_and_normalisation() -> None:
    before = datetime.now(UTC)
    event = AuditEvent("retrieval", "svc", {"b": 1, "a": [1, 2]})
    assert event.event_type is AuditEventType.RETRIEVAL
    assert event.occurred_at is not None and event.occurred_at >= before
    assert event.occurred_at.tzinfo is UTC
    assert event.canonical_payload == '{"a":[1,2],"b":1}'
    plus2 = timezone(timedelta(hours=2))
    local = AuditEvent("rerank", "svc", {}, occurred_at=datetime(2024, 1, 1, 2, tzinfo=plus2))
    assert local.occurred_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert local.occurred_at is not None and local.occurred_at.utcoffset() == timedelta(0)
    assert AuditEvent("rerank", "svc", {}).event_id != AuditEvent("rerank", "svc", {}).event_id


def test_payload_is_snapshotted() -> None:
    data = {"k": [1]}
    event = AuditEvent("retrieval", "svc", data)
    data["k"].append(2)
    data["new"] = True
    assert event.canonical_payload == '{"k":[1]}'
    assert "new" not in event.payload
    with pytest.raises(TypeError):
        event.payload["x"] = 1  # type: ignore[index]


@pytest.mark.parametrize("kwargs", [
    {"event_type": "nope"},
    {"actor": ""},
    {"actor": "x" * 256},
    {"tenant": ""},
    {"request_id": 5},
    {"event_id": "not-a-uuid"},
    {"event_id": "00000000-0000-4000-8000-00000000000A"},
    {"parent_event_id": "123"},
    {"payload": ["not", "a", "mapping"]},
    {"payload": {"x": float("nan")}},
    {"payload": {1: "int key"}},
    {"occurred_at": datetime(2024, 1, 1)},
    {"occurred_at": "2024-01-01T00:00:00Z"},
])
def test_invalid_events_are_refused_at_construction(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"event_type": "retrieval", "actor": "svc", "payload": {}}
    with pytest.raises(InputError):
        AuditEvent(**{**base, **kwargs})  # type: ignore[arg-type]


def test_new_event_id_is_a_time_ordered_uuid7() -> None:
    import time
    import uuid

    before = time.time_ns() // 1_000_000
    value = new_event_id()
    parsed = uuid.UUID(value)
    assert str(parsed) == value and parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert before <= parsed.int >> 80 <= time.time_ns() // 1_000_000
    time.sleep(0.002)
    assert new_event_id() > value


def test_record_parses_its_payload_lazily_and_knows_redaction() -> None:
    fields = dict(seq=1, event_id=new_event_id(), occurred_at=datetime.now(UTC),
                  event_type=AuditEventType.RETRIEVAL, actor="svc", tenant=None,
                  request_id=None, parent_event_id=None, payload_digest="d", prev_hash="p",
                  entry_hash="e")
    record = AuditRecord(payload_json=canonical_json({"a": 1}), **fields)  # type: ignore[arg-type]
    assert record.payload == {"a": 1} and not record.redacted
    redacted = AuditRecord(payload_json=None, **fields)  # type: ignore[arg-type]
    assert redacted.payload is None and redacted.redacted


# -- signing ---------------------------------------------------------------------------------

def test_sign_and_verify_a_checkpoint() -> None:
    signer = CheckpointSigner.generate()
    checkpoint = signer.sign(10, "ab" * 32, datetime(2024, 1, 1, tzinfo=UTC))
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert signer.key_id == hashlib.sha256(raw).hexdigest()[:16] == checkpoint.key_id
    assert signature_valid(signer.public_key, checkpoint)
    for forged in (
        checkpoint.__class__(11, checkpoint.head_hash, checkpoint.created_at,
                             checkpoint.signature, checkpoint.key_id),
        checkpoint.__class__(10, "cd" * 32, checkpoint.created_at, checkpoint.signature,
                             checkpoint.key_id),
        checkpoint.__class__(10, checkpoint.head_hash, checkpoint.created_at
                             + timedelta(microseconds=1), checkpoint.signature, checkpoint.key_id),
        checkpoint.__class__(10, checkpoint.head_hash, checkpoint.created_at, "00" * 64,
                             checkpoint.key_id),
        checkpoint.__class__(10, checkpoint.head_hash, checkpoint.created_at, "zz",
                             checkpoint.key_id),
    ):
        assert not signature_valid(signer.public_key, forged)
    assert not signature_valid(CheckpointSigner.generate().public_key, checkpoint)


def test_message_is_canonical_json() -> None:
    message = checkpoint_message(3, "ab", datetime(2024, 1, 1, tzinfo=UTC))
    assert message == (b'{"created_at":"2024-01-01T00:00:00.000000Z","head_hash":"ab","seq":3,'
                       b'"type":"advanced-rag/audit-checkpoint/v1"}')


def test_keys_load_from_file_env_and_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signer = CheckpointSigner.generate()
    path = tmp_path / "key.pem"
    signer.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(FileExistsError):
        signer.save(path)
    assert CheckpointSigner.from_file(path).key_id == signer.key_id
    seed = signer._private.private_bytes(serialization.Encoding.Raw,
                                         serialization.PrivateFormat.Raw,
                                         serialization.NoEncryption())
    for value in (seed.hex(), base64.b64encode(seed).decode(), path.read_text()):
        monkeypatch.setenv("AUDIT_KEY_UNDER_TEST", value)
        assert CheckpointSigner.from_env("AUDIT_KEY_UNDER_TEST").key_id == signer.key_id
    monkeypatch.delenv("AUDIT_KEY_UNDER_TEST")
    with pytest.raises(ComplianceError, match="AUDIT_KEY_UNDER_TEST"):
        CheckpointSigner.from_env("AUDIT_KEY_UNDER_TEST")
    monkeypatch.setenv("AUDIT_KEY_UNDER_TEST", "not a key")
    with pytest.raises(ComplianceError):
        CheckpointSigner.from_env("AUDIT_KEY_UNDER_TEST")
    for form in (signer.public_key_hex, bytes.fromhex(signer.public_key_hex), signer.public_key,
                 signer.public_key.public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo
                                                ).decode()):
        assert key_id_of(load_public_key(form)) == signer.key_id
    assert signer.key_id in repr(signer) and seed.hex() not in repr(signer)


def test_anchor_lines_round_trip_and_bad_lines_are_named(tmp_path: Path) -> None:
    signer = CheckpointSigner.generate()
    anchor = tmp_path / "sub" / "anchor.jsonl"
    first = signer.sign(5, "ab" * 32, datetime.now(UTC))
    second = signer.sign(9, "cd" * 32, datetime.now(UTC))
    append_anchor(anchor, first, signer.public_key_hex)
    append_anchor(anchor, second, signer.public_key_hex)
    lines = list(read_anchor(anchor))
    assert [line.checkpoint for line in lines] == [first, second]
    assert lines[1].line_no == 2 and lines[0].public_key_hex == signer.public_key_hex
    with anchor.open("a") as handle:
        handle.write('{"seq": 3}\n')
    with pytest.raises(AuditIntegrityError, match="line 3"):
        list(read_anchor(anchor))


def test_writer_records_equal_init_built_ones_and_use_the_reference_hash() -> None:
    import dataclasses

    from compliance.audit.hashing import GENESIS, chain_hash, encode_entry, payload_digest, rfc3339
    from compliance.audit.writer import _record

    event = AuditEvent("retrieval", "svc", {"a": 1}, tenant="t", request_id="r")
    record, when = _record(event, 3, GENESIS)
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(AuditRecord)}
    assert set(vars(record)) == set(fields)
    assert AuditRecord(**fields) == record
    assert event.occurred_at is not None and when == rfc3339(event.occurred_at)
    assert record.payload_digest == payload_digest({"a": 1}) == event.payload_digest
    assert record.entry_hash == chain_hash(GENESIS, encode_entry(
        seq=3, event_id=event.event_id, occurred_at=event.occurred_at, event_type="retrieval",
        actor="svc", tenant="t", request_id="r", parent_event_id=None,
        payload_digest=record.payload_digest))
