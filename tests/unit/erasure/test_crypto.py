"""The personal-data envelope, key wrapping, KEK parsing and the canonical-JSON splice: pure
functions, real AES-256-GCM (no fakes)."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from advanced_rag.errors import ConfigError
from compliance.audit import AuditEvent
from compliance.audit.hashing import canonical_json
from compliance.erasure.cipher import _with_payload, decrypt_payload, splice
from compliance.erasure.crypto import (
    ERASED,
    KEY_UNAVAILABLE,
    UNDECRYPTABLE,
    EnvelopeError,
    field_aad,
    is_envelope,
    kek_id,
    key_aad,
    load_kek,
    new_data_key,
    open_envelope,
    parse_kek,
    seal,
    unwrap_key,
    wrap_key,
)

SUBJECT = "ab" * 32


def test_envelope_round_trip_and_shape() -> None:
    aead = AESGCM(new_data_key())
    aad = field_aad("e-1", "query", "k-1")
    box = seal(aead, "refund for jane ✓", kid="k-1", subject=SUBJECT, aad=aad)
    assert set(box) == {"enc", "kid", "subject", "nonce", "ct"}
    assert (box["enc"], box["kid"], box["subject"]) == ("aes-256-gcm", "k-1", SUBJECT)
    assert len(base64.b64decode(box["nonce"])) == 12
    assert "jane" not in json.dumps(box)
    assert is_envelope(box) and not is_envelope({"enc": "aes-256-gcm"}) and not is_envelope("x")
    assert open_envelope(aead, box, aad=aad) == "refund for jane ✓"
    again = seal(aead, "refund for jane ✓", kid="k-1", subject=SUBJECT, aad=aad)
    assert again["nonce"] != box["nonce"] and again["ct"] != box["ct"]  # fresh nonce each time


@pytest.mark.parametrize("aad", [field_aad("e-2", "query", "k-1"),  # copied into another event
                                 field_aad("e-1", "answer", "k-1"),  # into another field
                                 field_aad("e-1", "query", "k-2")])  # claimed under another key
def test_envelope_is_bound_to_event_field_and_key(aad: bytes) -> None:
    aead = AESGCM(new_data_key())
    box = seal(aead, "secret", kid="k-1", subject=SUBJECT, aad=field_aad("e-1", "query", "k-1"))
    with pytest.raises(EnvelopeError, match="authenticate"):
        open_envelope(aead, box, aad=aad)


def test_envelope_refuses_other_keys_altered_bytes_and_junk() -> None:
    aead, aad = AESGCM(new_data_key()), field_aad("e", "query", "k")
    box = seal(aead, "secret", kid="k", subject=SUBJECT, aad=aad)
    with pytest.raises(EnvelopeError):
        open_envelope(AESGCM(new_data_key()), box, aad=aad)
    ct = bytearray(base64.b64decode(box["ct"]))
    ct[0] ^= 1
    with pytest.raises(EnvelopeError):
        open_envelope(aead, {**box, "ct": base64.b64encode(bytes(ct)).decode()}, aad=aad)
    with pytest.raises(EnvelopeError, match="base64"):
        open_envelope(aead, {**box, "nonce": "not base64!"}, aad=aad)
    with pytest.raises(EnvelopeError, match="12 bytes"):
        open_envelope(aead, {**box, "nonce": base64.b64encode(b"short").decode()}, aad=aad)


def test_decrypt_payload_marks_erased_missing_and_forged_fields() -> None:
    live, dead = AESGCM(new_data_key()), AESGCM(new_data_key())
    payload = {
        "query": seal(live, "q", kid="live", subject=SUBJECT, aad=field_aad("e", "query", "live")),
        "answer": seal(dead, "a", kid="dead", subject=SUBJECT, aad=field_aad("e", "answer", "dead")),
        "question": seal(live, "x", kid="gone", subject=SUBJECT,
                         aad=field_aad("e", "question", "gone")),
        "note": seal(live, "n", kid="live", subject=SUBJECT, aad=field_aad("other", "note", "live")),
        "top_k": 5}
    shown = decrypt_payload(payload, "e", {"live": live, "dead": None})
    assert shown == {"query": "q", "answer": ERASED, "question": KEY_UNAVAILABLE,
                     "note": UNDECRYPTABLE, "top_k": 5}


def test_key_wrapping_round_trip_and_binding() -> None:
    kek, key = new_data_key(), new_data_key()
    blob = wrap_key(kek, key, aad=key_aad("k-1", SUBJECT))
    assert len(blob) == 12 + 32 + 16 and key not in blob
    assert unwrap_key(kek, blob, aad=key_aad("k-1", SUBJECT)) == key
    with pytest.raises(EnvelopeError, match="does not authenticate"):
        unwrap_key(new_data_key(), blob, aad=key_aad("k-1", SUBJECT))  # another KEK
    with pytest.raises(EnvelopeError):
        unwrap_key(kek, blob, aad=key_aad("k-2", SUBJECT))  # swapped onto another row
    with pytest.raises(EnvelopeError, match="60 bytes"):
        unwrap_key(kek, blob[:-1], aad=key_aad("k-1", SUBJECT))


def test_kek_parsing_refuses_short_long_and_non_base64_keys() -> None:
    good = base64.b64encode(bytes(range(32))).decode()
    assert parse_kek(good, env="K") == bytes(range(32))
    assert load_kek("K", {"K": f"  {good}\n"}) == bytes(range(32))
    assert load_kek("K", {}) is None and load_kek("K", {"K": " "}) is None
    with pytest.raises(ConfigError, match="decodes to 16 bytes.*exactly 32") as short:
        load_kek("K", {"K": base64.b64encode(b"x" * 16).decode()})
    assert short.value.key == "erasure.key_encryption_key_env"
    with pytest.raises(ConfigError, match="decodes to 33 bytes"):
        parse_kek(base64.b64encode(b"x" * 33).decode(), env="K")
    with pytest.raises(ConfigError, match="K is not valid base64"):
        parse_kek("this is not base64 at all!", env="K")
    assert kek_id(bytes(32)) != kek_id(bytes(31) + b"\x01") and len(kek_id(bytes(32))) == 16


def _random_text(rng: random.Random) -> str:
    alphabet = ['a', 'Z', ' ', '"', '\\', '\n', 'é', '✓', '😀', ',', ':', '{', '}', '"query":', '\u2028']
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def test_splice_gives_exactly_canonical_json() -> None:
    """The fast path must produce byte for byte what canonical_json would, or step aside."""
    rng = random.Random(7)
    box = {"enc": "aes-256-gcm", "kid": "k", "subject": SUBJECT, "nonce": "bm9uY2U=", "ct": "Y3Q="}
    spliced = 0
    for _ in range(2000):
        payload: dict[str, object] = {"query": _random_text(rng), "top_k": rng.randint(0, 9)}
        if rng.random() < 0.5:
            payload["answer"] = _random_text(rng)
        if rng.random() < 0.3:  # the same key (and maybe value) nested: must not be touched
            payload["filters"] = {"query": rng.choice([payload["query"], _random_text(rng)])}
        if rng.random() < 0.3:
            payload["zz"] = [_random_text(rng), {"answer": _random_text(rng)}]
        names = [n for n in ("query", "answer") if n in payload and rng.random() < 0.8]
        replaced = {n: {**box, "kid": n} for n in names}
        expected = canonical_json({**payload, **replaced})
        out = splice(canonical_json(payload), payload, replaced)
        assert out is None or out == expected
        if "filters" not in payload and "zz" not in payload:  # no key repeated below the top
            assert out is not None  # the fast path is taken whenever it is unambiguous
            spliced += 1
    assert spliced > 800


def test_rebuilt_event_equals_a_freshly_built_one() -> None:
    when = datetime(2026, 3, 1, tzinfo=UTC)
    event = AuditEvent("retrieval", "alice", {"query": "q", "filters": {"query": "q"}, "k": 1},
                       tenant="t", request_id="r", occurred_at=when)
    box = {"enc": "aes-256-gcm", "kid": "k", "subject": SUBJECT, "nonce": "bg==", "ct": "Yw=="}
    copy = _with_payload(event, {**event.payload, "query": box}, {"query": box})
    fresh = AuditEvent("retrieval", "alice", {**event.payload, "query": box}, tenant="t",
                       request_id="r", occurred_at=when, event_id=event.event_id)
    assert copy == fresh
    assert (copy.canonical_payload, copy.payload_digest) == (fresh.canonical_payload,
                                                             fresh.payload_digest)
    assert dict(copy.payload) == dict(fresh.payload) and event.payload["query"] == "q"
