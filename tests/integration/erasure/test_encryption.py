"""Personal data is encrypted at rest per subject, decrypted transparently for readers, kept
encrypted in exports (which still verify offline), and the KEK is validated and used."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from advanced_rag.config import PipelineConfig
from advanced_rag.errors import ConfigError
from compliance.audit import AuditEvent, AuditEventType, AuditTrail, verify_chain, verify_export
from compliance.erasure.crypto import field_aad, kek_id, key_aad, open_envelope, unwrap_key
from compliance.errors import AuditWriteError
from compliance.manager import ComplianceManager
from compliance.retention.holds import subject_ref
from tests.integration.audit.conftest import Backend

from .conftest import KEK_ENV, make_config

pytestmark = pytest.mark.integration

ALICE_Q = "does my card 4111 1111 1111 1111 cover travel insurance"
ALICE_A = "Alice's premium card covers travel insurance up to 50,000 euros."
BOB_Q = "mortgage rates for first-time buyers"


def trail_for(config: PipelineConfig) -> AuditTrail:
    return AuditTrail.from_settings(config.audit, data_dir=config.data_dir, erasure=config.erasure)


def calls(trail: AuditTrail) -> list[AuditEvent]:
    """A retrieval + generation by alice, a scoring by bob, a system event without personal data."""
    alice_q = AuditEvent(AuditEventType.RETRIEVAL, "alice", {**trail.query_fields(ALICE_Q),
                                                             "top_k": 5}, tenant="bank-a")
    return [alice_q,
            AuditEvent(AuditEventType.GENERATION, "alice", {"answer": ALICE_A, "refused": False},
                       tenant="bank-a", parent_event_id=alice_q.event_id),
            AuditEvent(AuditEventType.SCORING, "bob", {"question": BOB_Q, "answer": "about 4 %",
                                                       "claims": 1}, tenant="bank-b"),
            AuditEvent(AuditEventType.MODEL_LOADED, "system", {"role": "embedder", "model": "m"})]


async def test_personal_fields_are_encrypted_at_rest(backend: Backend,
                                                     config: PipelineConfig) -> None:
    async with trail_for(config) as trail:
        records = await trail.record(calls(trail))
    assert [r.seq for r in records] == [1, 2, 3, 4]
    raw = backend.sql("SELECT seq, actor, payload FROM audit_events ORDER BY seq")
    dump = " ".join(str(row[2]) for row in raw)
    for text in ("travel insurance", "4111", "premium card", "mortgage", "about 4 %"):
        assert text not in dump
    query = json.loads(raw[0][2])["query"]
    assert set(query) == {"enc", "kid", "subject", "nonce", "ct"}
    assert query["enc"] == "aes-256-gcm" and query["subject"] == subject_ref("alice")
    assert json.loads(raw[1][2])["answer"]["kid"] == query["kid"]  # one key per subject
    scoring = json.loads(raw[2][2])
    assert scoring["question"]["kid"] == scoring["answer"]["kid"] != query["kid"]
    assert scoring["claims"] == 1 and json.loads(raw[3][2]) == {"role": "embedder", "model": "m"}
    assert json.loads(raw[0][2])["query_chars"] == len(ALICE_Q)
    keys = backend.sql("SELECT subject_ref, wrapping, destroyed_at FROM subject_keys "
                       "ORDER BY subject_ref")
    assert sorted(k[0] for k in keys) == sorted([subject_ref("alice"), subject_ref("bob")])
    assert {k[1] for k in keys} == {"kek-aes-256-gcm"} and all(k[2] is None for k in keys)


async def test_readers_see_plaintext_and_verification_needs_no_keys(
        backend: Backend, config: PipelineConfig, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async with trail_for(config) as trail:
        await trail.record(calls(trail))
    async with ComplianceManager(config) as cm:
        retrieval, generation, scoring, model = await cm.query_audit_logs()
        # the redaction of the card number happened before encryption, as without it
        assert retrieval.payload is not None
        assert retrieval.payload["query"] == ("does my card [REDACTED:card] cover travel "
                                              "insurance")
        assert retrieval.payload["redacted"] == {"card": 1}
        assert generation.payload is not None and generation.payload["answer"] == ALICE_A
        assert scoring.payload is not None and dict(scoring.payload) == {
            "question": BOB_Q, "answer": "about 4 %", "claims": 1}
        assert "travel" not in (retrieval.payload_json or "")  # the stored text stays encrypted
        [stored] = await cm.store.query(event_type="retrieval")
        assert retrieval == stored  # same record: only what it shows differs
        assert stored.payload is not None and stored.payload["query"]["enc"] == "aes-256-gcm"
        assert [r.payload for r in await cm.query_audit_logs(actor="system")] == [model.payload]
        export = tmp_path / "export.jsonl"
        await cm.export_audit_log(export)
    async with trail_for(config) as reader:  # readable() shows copies, the originals stay
        [raw] = await reader.store.query(event_type="retrieval")
        [copy] = await reader.readable([raw])
        assert copy.payload is not None and copy.payload["query"].startswith("does my card")
        assert raw.payload is not None and raw.payload["query"]["enc"] == "aes-256-gcm"
    text = export.read_text(encoding="utf-8")
    assert "travel" not in text and "mortgage" not in text and "aes-256-gcm" in text
    assert verify_export(export).events == 4

    monkeypatch.delenv(KEK_ENV)  # verification and export never touch keys
    plain = make_config(backend, tmp_path, encrypt_personal_data=False)
    async with AuditTrail.from_settings(plain.audit, data_dir=plain.data_dir) as bare:
        assert (await verify_chain(bare.store)).events_checked == 4


async def test_key_wrapping_round_trip_through_the_database(backend: Backend,
                                                            config: PipelineConfig,
                                                            kek: bytes) -> None:
    async with trail_for(config) as trail:
        [record] = await trail.record(calls(trail)[:1])
    [(kid, material, wrapping, stored_kek_id)] = backend.sql(
        "SELECT key_id, key_material, wrapping, kek_id FROM subject_keys")
    assert wrapping == "kek-aes-256-gcm" and stored_kek_id == kek_id(kek)
    assert len(bytes(material)) == 12 + 32 + 16
    # decrypt the stored envelope by hand: unwrap the key with the KEK, open the envelope
    data_key = unwrap_key(kek, bytes(material), aad=key_aad(kid, subject_ref("alice")))
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    envelope = json.loads(record.payload_json or "")["query"]
    assert envelope["kid"] == kid
    plain = open_envelope(AESGCM(data_key), envelope, aad=field_aad(record.event_id, "query", kid))
    assert plain.startswith("does my card [REDACTED:card]")


async def test_wrong_short_or_missing_kek_is_refused(backend: Backend, config: PipelineConfig,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async with trail_for(config) as trail:
        await trail.record(calls(trail)[:1])
    monkeypatch.setenv(KEK_ENV, base64.b64encode(b"k" * 16).decode())
    with pytest.raises(ConfigError, match="decodes to 16 bytes") as short:
        trail_for(config)
    assert short.value.key == "erasure.key_encryption_key_env"
    monkeypatch.setenv(KEK_ENV, "%%% not base64 %%%")
    with pytest.raises(ConfigError, match="not valid base64"):
        ComplianceManager(config)

    other = bytes(range(32))
    monkeypatch.setenv(KEK_ENV, base64.b64encode(other).decode())
    async with ComplianceManager(config) as cm:
        with pytest.raises(ConfigError, match=f"{KEK_ENV} holds key {kek_id(other)}"):
            await cm.query_audit_logs()
        async with trail_for(config) as writer:  # writing for the same subject fails closed
            with pytest.raises(AuditWriteError, match="wrapped under key-encryption key"):
                await writer.record(calls(writer)[:1])
    monkeypatch.delenv(KEK_ENV)
    async with ComplianceManager(config) as cm:
        with pytest.raises(ConfigError, match=f"but {KEK_ENV} is not set"):
            await cm.query_audit_logs()
    assert backend.sql("SELECT COUNT(*) FROM audit_events")[0][0] == 1  # nothing in plaintext


async def test_without_a_kek_keys_are_stored_unwrapped(backend: Backend, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEK_ENV, raising=False)
    config = make_config(backend, tmp_path)
    async with trail_for(config) as trail:
        await trail.record(calls(trail))
    rows = backend.sql("SELECT wrapping, kek_id, key_material FROM subject_keys")
    assert {(r[0], r[1], len(bytes(r[2]))) for r in rows} == {("none", None, 32)}
    async with ComplianceManager(config) as cm:
        [retrieval] = await cm.query_audit_logs(AuditEventType.RETRIEVAL)
        assert retrieval.payload is not None and "travel insurance" in retrieval.payload["query"]


async def test_encryption_off_writes_plaintext_and_still_reads_old_envelopes(
        backend: Backend, config: PipelineConfig, tmp_path: Path) -> None:
    async with trail_for(config) as trail:
        await trail.record(calls(trail)[:1])
    off = make_config(backend, tmp_path, encrypt_personal_data=False)
    async with trail_for(off) as trail:
        await trail.record([AuditEvent("retrieval", "alice", {"query": "in the clear"})])
    assert "in the clear" in backend.sql("SELECT payload FROM audit_events WHERE seq = 2")[0][0]
    async with ComplianceManager(off) as cm:
        old, new = await cm.query_audit_logs()
    assert old.payload is not None and "travel insurance" in old.payload["query"]
    assert new.payload is not None and new.payload["query"] == "in the clear"
