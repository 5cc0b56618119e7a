"""Signed checkpoints (Ed25519) and the append-only anchor file kept outside the database.

A checkpoint says "at ``seq`` the chain head was ``head_hash``", signed over
``canonical_bytes({"created_at", "head_hash", "seq", "type"})``. Stored in ``audit_checkpoints``
it catches edits that did not re-sign; copied as one JSON line into an *anchor file* on other
storage (WORM bucket, another host, a ticket) it also catches an attacker who rewrote the
whole database, recomputed every hash and dropped the checkpoint rows: the database cannot
reproduce a head it no longer has.

``key_id`` is the first 16 hex characters of SHA-256 over the raw 32-byte public key.

Example::

    signer = CheckpointSigner.from_env("ADVANCED_RAG_AUDIT_SIGNING_KEY")
    checkpoint = await store.checkpoint(signer, anchor=Path("/mnt/worm/audit-anchor.jsonl"))
    signer.key_id, checkpoint.seq
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import AuditIntegrityError, ComplianceError
from .hashing import canonical_bytes, canonical_json, rfc3339
from .models import Checkpoint

__all__ = [
    "AnchorLine",
    "CheckpointSigner",
    "PublicKeyLike",
    "append_anchor",
    "checkpoint_message",
    "key_id_of",
    "load_public_key",
    "read_anchor",
    "signature_valid",
]

PublicKeyLike = Ed25519PublicKey | bytes | str
"""A public key object, its raw 32 bytes, their hex, or a PEM text."""

_MESSAGE_TYPE = "advanced-rag/audit-checkpoint/v1"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


def checkpoint_message(seq: int, head_hash: str, created_at: datetime) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    return canonical_bytes({"created_at": rfc3339(created_at), "head_hash": head_hash,
                            "seq": seq, "type": _MESSAGE_TYPE})


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(*_RAW)


def key_id_of(public_key: PublicKeyLike) -> str:
    """First 16 hex characters of SHA-256 over the raw public key."""
    return hashlib.sha256(_raw_public(load_public_key(public_key))).hexdigest()[:16]


def _decode_text_key(text: str) -> bytes:
    text = text.strip()
    if len(text) == 64:  # 32 bytes as hex; base64 of 32 bytes is 44 characters
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ComplianceError("key text is neither PEM, hex nor base64") from exc


def load_public_key(value: PublicKeyLike) -> Ed25519PublicKey:
    """An Ed25519 public key from an object, raw 32 bytes, hex/base64 of them, or PEM."""
    if isinstance(value, Ed25519PublicKey):
        return value
    try:
        if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(value.encode("ascii"))
            if not isinstance(key, Ed25519PublicKey):
                raise ComplianceError(f"not an Ed25519 public key: {type(key).__name__}")
            return key
        raw = _decode_text_key(value) if isinstance(value, str) else value
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise ComplianceError(f"unreadable Ed25519 public key: {exc}") from exc


def signature_valid(public_key: Ed25519PublicKey, checkpoint: Checkpoint) -> bool:
    """True when ``checkpoint.signature`` is ``public_key``'s signature of its message."""
    try:
        public_key.verify(bytes.fromhex(checkpoint.signature),
                          checkpoint_message(checkpoint.seq, checkpoint.head_hash,
                                             checkpoint.created_at))
    except (InvalidSignature, ValueError):
        return False
    return True


class CheckpointSigner:
    """An Ed25519 private key that signs checkpoints. Its ``repr`` never shows the key.

    Keep the private key out of the database host's reach (a secret store, an env var set by
    the orchestrator); verifiers need only :attr:`public_key_hex`.

    Example::

        signer = CheckpointSigner.generate()
        signer.save(Path("audit-signing.pem"))        # 0600, refuses to overwrite
        same = CheckpointSigner.from_file("audit-signing.pem")
        assert same.key_id == signer.key_id
    """

    __slots__ = ("_private", "key_id", "public_key", "public_key_hex")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key: Ed25519PublicKey = private_key.public_key()
        self.public_key_hex: str = _raw_public(self.public_key).hex()
        self.key_id: str = key_id_of(self.public_key)

    def __repr__(self) -> str:
        return f"CheckpointSigner(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> CheckpointSigner:
        """A fresh random key (for tests and first set-up; persist it with :meth:`save`)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_bytes(cls, data: bytes, *, password: bytes | None = None) -> CheckpointSigner:
        """From PEM (PKCS#8, optionally encrypted) or the raw 32-byte private seed."""
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                key = serialization.load_pem_private_key(data, password=password)
                if not isinstance(key, Ed25519PrivateKey):
                    raise ComplianceError(f"not an Ed25519 private key: {type(key).__name__}")
                return cls(key)
            return cls(Ed25519PrivateKey.from_private_bytes(data))
        except (ValueError, TypeError) as exc:
            raise ComplianceError(f"unreadable Ed25519 private key: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | Path, *, password: bytes | None = None) -> CheckpointSigner:
        """From a PEM file (as written by :meth:`save`) or a raw 32-byte key file."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ComplianceError(f"cannot read signing key {path}: {exc}") from exc
        return cls.from_bytes(data, password=password)

    @classmethod
    def from_env(cls, var: str = "ADVANCED_RAG_AUDIT_SIGNING_KEY") -> CheckpointSigner:
        """From an environment variable holding PEM text or the 32-byte seed as hex/base64."""
        value = os.environ.get(var)
        if not value:
            raise ComplianceError(f"environment variable {var} is not set (checkpoint signing key)")
        if value.lstrip().startswith("-----BEGIN"):
            return cls.from_bytes(value.encode("ascii"))
        return cls.from_bytes(_decode_text_key(value))

    def save(self, path: str | Path) -> None:
        """Write the private key as unencrypted PKCS#8 PEM, mode 0600; never overwrites."""
        pem = self._private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)

    def sign_message(self, message: bytes) -> str:
        """A hex Ed25519 signature of ``message`` (other signed artefacts, e.g. report files;
        their messages carry their own type string so none reads as a checkpoint)."""
        return self._private.sign(message).hex()

    def sign(self, seq: int, head_hash: str, created_at: datetime) -> Checkpoint:
        """Sign "the head at ``seq`` is ``head_hash``" (``created_at`` must be timezone-aware)."""
        signature = self._private.sign(checkpoint_message(seq, head_hash, created_at)).hex()
        return Checkpoint(seq=seq, head_hash=head_hash, created_at=created_at,
                          signature=signature, key_id=self.key_id)


@dataclass(frozen=True, slots=True)
class AnchorLine:
    """One line of an anchor file: a checkpoint plus the public key that signed it."""

    line_no: int
    checkpoint: Checkpoint
    public_key_hex: str


def append_anchor(path: Path, checkpoint: Checkpoint, public_key_hex: str) -> None:
    """Append one JSON line for ``checkpoint`` and fsync it.

    One ``write`` on an ``O_APPEND`` descriptor: lines from several processes never interleave.
    """
    line = canonical_json({"created_at": rfc3339(checkpoint.created_at),
                           "head_hash": checkpoint.head_hash, "key_id": checkpoint.key_id,
                           "public_key": public_key_hex, "seq": checkpoint.seq,
                           "signature": checkpoint.signature, "v": 1}) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _bad_line(path: Path, line_no: int, why: str) -> AuditIntegrityError:
    return AuditIntegrityError(0, None, None, f"anchor {path} line {line_no}: {why}")


def read_anchor(path: Path) -> Iterator[AnchorLine]:
    """Stream the lines of an anchor file; a malformed line raises :class:`AuditIntegrityError`.

    Signatures are *not* checked here (verification decides which keys it trusts).
    """
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise _bad_line(path, 0, f"cannot open: {exc}") from exc
    with handle:
        for line_no, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
                checkpoint = Checkpoint(
                    seq=int(data["seq"]), head_hash=str(data["head_hash"]),
                    created_at=datetime.fromisoformat(str(data["created_at"])),
                    signature=str(data["signature"]), key_id=str(data["key_id"]))
                public_key_hex = str(data["public_key"])
            except (ValueError, KeyError, TypeError) as exc:
                raise _bad_line(path, line_no, f"unreadable ({exc})") from exc
            if checkpoint.created_at.utcoffset() is None:
                raise _bad_line(path, line_no, "created_at has no timezone")
            yield AnchorLine(line_no, checkpoint, public_key_hex)
