"""The envelope that personal data is stored in, and key wrapping: pure functions, no I/O.

A payload field is replaced by an envelope (AES-256-GCM, a fresh 96-bit random nonce per
field, the tag appended to the ciphertext)::

    {"enc": "aes-256-gcm", "kid": "<subject key id>", "subject": "<SHA-256 of the subject>",
     "nonce": "<base64>", "ct": "<base64 ciphertext + tag>"}

The associated data binds the ciphertext to its event, field and key
(:func:`field_aad`), so an envelope copied into another event or field does not decrypt.
Subject keys are wrapped the same way under the key-encryption key (KEK), bound to their key
id and subject (:func:`key_aad`), so wrapped keys cannot be swapped between rows.

Example::

    key = new_data_key()
    aead = AESGCM(key)
    box = seal(aead, "refund for jane", kid="k1", subject="ab12…", aad=field_aad("e1", "query", "k1"))
    open_envelope(aead, box, aad=field_aad("e1", "query", "k1"))   # 'refund for jane'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from advanced_rag.errors import ConfigError

__all__ = [
    "ALGORITHM",
    "ENVELOPE_MARKER",
    "ERASED",
    "KEY_UNAVAILABLE",
    "UNDECRYPTABLE",
    "EnvelopeError",
    "field_aad",
    "is_envelope",
    "kek_id",
    "key_aad",
    "load_kek",
    "new_data_key",
    "open_envelope",
    "parse_kek",
    "seal",
    "unwrap_key",
    "wrap_key",
]

ALGORITHM = "aes-256-gcm"
ENVELOPE_MARKER = '"enc":"aes-256-gcm"'
"""How an envelope appears in canonical (sorted-key compact) JSON: a cheap pre-filter."""

ERASED = "[erased]"
"""What a reader sees in place of a field whose subject key was destroyed."""
KEY_UNAVAILABLE = "[key unavailable]"
"""… whose key is not in this database (restored elsewhere, or the key row is missing)."""
UNDECRYPTABLE = "[undecryptable]"
"""… whose ciphertext does not authenticate under its key (altered, or moved between events)."""

_ENVELOPE_KEYS = frozenset({"enc", "kid", "subject", "nonce", "ct"})
_NONCE_BYTES = 12
KEY_BYTES = 32


class EnvelopeError(ValueError):
    """An envelope or wrapped key is malformed or does not authenticate."""


def new_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return os.urandom(KEY_BYTES)


def field_aad(event_id: str, field: str, kid: str) -> bytes:
    """Associated data of one field: the event, the field name and the key id."""
    return f"advanced-rag/field/v1\x00{event_id}\x00{field}\x00{kid}".encode()


def key_aad(kid: str, subject: str) -> bytes:
    """Associated data of a wrapped subject key: its id and its subject reference."""
    return f"advanced-rag/subject-key/v1\x00{kid}\x00{subject}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, name: str) -> bytes:
    if not isinstance(text, str):
        raise EnvelopeError(f"envelope {name} must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EnvelopeError(f"envelope {name} is not base64: {exc}") from exc


def seal(aead: AESGCM, value: str, *, kid: str, subject: str, aad: bytes) -> dict[str, str]:
    """Encrypt ``value`` (UTF-8) into an envelope."""
    nonce = os.urandom(_NONCE_BYTES)
    ct = aead.encrypt(nonce, value.encode("utf-8"), aad)
    return {"enc": ALGORITHM, "kid": kid, "subject": subject, "nonce": _b64(nonce), "ct": _b64(ct)}


def is_envelope(value: object) -> bool:
    """Whether ``value`` has the shape of an envelope (say nothing yet about its key)."""
    return (isinstance(value, Mapping) and value.get("enc") == ALGORITHM
            and _ENVELOPE_KEYS.issubset(value.keys()))


def open_envelope(aead: AESGCM, envelope: Mapping[str, Any], *, aad: bytes) -> str:
    """The plaintext of ``envelope``; raises :class:`EnvelopeError` if it does not authenticate."""
    nonce = _unb64(envelope.get("nonce"), "nonce")
    ct = _unb64(envelope.get("ct"), "ct")
    if len(nonce) != _NONCE_BYTES:
        raise EnvelopeError(f"envelope nonce must be {_NONCE_BYTES} bytes, got {len(nonce)}")
    try:
        return aead.decrypt(nonce, ct, aad).decode("utf-8")
    except InvalidTag as exc:
        raise EnvelopeError("envelope does not authenticate under its key") from exc
    except UnicodeDecodeError as exc:  # authenticated but not UTF-8: never written by seal()
        raise EnvelopeError("envelope plaintext is not UTF-8") from exc


# -- key-encryption key ------------------------------------------------------------------------


def parse_kek(value: str, *, env: str) -> bytes:
    """A KEK from its base64 text; refuses anything but exactly 32 bytes."""
    try:
        kek = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{env} is not valid base64 (expected 32 random bytes, base64-encoded; "
                          "generate one with `advanced-rag erasure keygen`)",
                          key="erasure.key_encryption_key_env") from None
    if len(kek) != KEY_BYTES:
        raise ConfigError(f"{env} decodes to {len(kek)} bytes; a key-encryption key must be "
                          f"exactly {KEY_BYTES} bytes (AES-256)",
                          key="erasure.key_encryption_key_env")
    return kek


def load_kek(env: str, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The KEK from the environment variable ``env``; ``None`` when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(env, "")
    return parse_kek(value, env=env) if value.strip() else None


def kek_id(kek: bytes) -> str:
    """A short public fingerprint of a KEK (16 hex): tells which KEK wrapped a key, reveals
    nothing about it."""
    return hashlib.sha256(b"advanced-rag/kek-id/v1\x00" + kek).hexdigest()[:16]


def wrap_key(kek: bytes, key: bytes, *, aad: bytes) -> bytes:
    """``nonce ‖ AES-256-GCM(kek, key)``."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(kek).encrypt(nonce, key, aad)


def unwrap_key(kek: bytes, blob: bytes, *, aad: bytes) -> bytes:
    """The key :func:`wrap_key` wrapped; raises :class:`EnvelopeError` if it does not
    authenticate (another KEK, another row's key, altered bytes)."""
    if len(blob) != _NONCE_BYTES + KEY_BYTES + 16:
        raise EnvelopeError(f"wrapped key must be {_NONCE_BYTES + KEY_BYTES + 16} bytes, "
                            f"got {len(blob)}")
    try:
        return AESGCM(kek).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise EnvelopeError("wrapped key does not authenticate under this key-encryption key")\
            from exc
