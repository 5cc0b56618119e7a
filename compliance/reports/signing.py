"""Detached Ed25519 signatures of report files, with the audit checkpoint signing key.

``compliance-2026-10.json.sig`` sits next to the JSON file: one JSON object holding the
SHA-256 of the file's bytes, the SHA-256 of the report's canonical content (the digest the
``compliance_report`` audit event records), the key id and public key, and the signature over
``canonical_bytes({"file_sha256", "report_sha256", "type"})``. The ``type`` string
(``advanced-rag/compliance-report/v1``) keeps a report signature from ever being read as a
checkpoint signature made with the same key.

The key is the one ``audit.signing_key_file`` or the variable ``audit.signing_key_env`` names,
read exactly as the checkpoint signer reads it, so ``key_id`` is the checkpoints' key id.

Example::

    signer = ReportSigner.from_settings(config.audit)        # None: no key configured
    signer.sign_file(Path("compliance-2026-10.json"))        # writes compliance-2026-10.json.sig
    check = verify_report_file("compliance-2026-10.json", public_key=signer.public_key_hex)
    check.ok, check.problems
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature

from advanced_rag.config import AuditSettings

from ..audit.checkpoints import CheckpointSigner, PublicKeyLike, key_id_of, load_public_key
from ..audit.hashing import canonical_bytes
from ..errors import ComplianceError

__all__ = ["DIGEST_FIELD", "SIGNATURE_TYPE", "ReportSigner", "ReportVerification",
           "content_digest", "signature_path", "verify_report_file"]

SIGNATURE_TYPE = "advanced-rag/compliance-report/v1"
DIGEST_FIELD = "sha256_of_report"
"""The JSON file's own field holding the digest of everything else in it."""


def content_digest(data: Mapping[str, Any]) -> str:
    """SHA-256 of a report's canonical JSON without its own digest field
    (:func:`advanced_rag.recording.report_digest`, as the drift report's)."""
    from advanced_rag.recording import report_digest  # here: recording imports compliance

    return report_digest({k: v for k, v in data.items() if k != DIGEST_FIELD})


def signature_path(path: str | Path) -> Path:
    """``report.json`` → ``report.json.sig``."""
    p = Path(path)
    return p.with_name(p.name + ".sig")


def _message(file_sha256: str, report_sha256: str) -> bytes:
    return canonical_bytes({"file_sha256": file_sha256, "report_sha256": report_sha256,
                            "type": SIGNATURE_TYPE})


class ReportSigner:
    """Signs report files with the audit checkpoint signing key (a
    :class:`~compliance.audit.checkpoints.CheckpointSigner`). Its ``repr`` never shows the key."""

    __slots__ = ("_signer", "key_id", "public_key_hex")

    def __init__(self, signer: CheckpointSigner) -> None:
        self._signer = signer
        self.public_key_hex: str = signer.public_key_hex
        self.key_id: str = signer.key_id

    def __repr__(self) -> str:
        return f"ReportSigner(key_id={self.key_id!r})"

    @classmethod
    def from_settings(cls, settings: AuditSettings) -> ReportSigner | None:
        """The key ``audit.signing_key_file`` / ``audit.signing_key_env`` names, read as the
        checkpoint signer reads it; ``None`` when neither is set. A key that is set but
        unreadable raises :class:`ComplianceError`."""
        if settings.signing_key_file:
            return cls(CheckpointSigner.from_file(settings.signing_key_file))
        if not os.environ.get(settings.signing_key_env):
            return None
        return cls(CheckpointSigner.from_env(settings.signing_key_env))

    def sign_file(self, path: str | Path) -> Path:
        """Write ``<path>.sig`` for the JSON report at ``path``; returns the signature path."""
        raw = Path(path).read_bytes()
        file_sha = hashlib.sha256(raw).hexdigest()
        report_sha = content_digest(json.loads(raw))
        body = {"v": 1, "type": SIGNATURE_TYPE, "file": Path(path).name, "file_sha256": file_sha,
                "report_sha256": report_sha, "key_id": self.key_id,
                "public_key": self.public_key_hex, "signed_at": datetime.now(UTC).isoformat(),
                "signature": self._signer.sign_message(_message(file_sha, report_sha))}
        target = signature_path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        return target


SignatureStatus = Literal["valid", "invalid", "missing", "untrusted_key"]


@dataclass(frozen=True, slots=True)
class ReportVerification:
    """What :func:`verify_report_file` found. ``ok`` needs the content digest to match and a
    valid signature by a trusted key (the pinned ``public_key``, or, unpinned, the key the
    signature file names: then only that the file is unchanged since *someone* signed it)."""

    path: str
    period: str | None
    report_sha256: str
    digest_ok: bool
    signature: SignatureStatus
    key_id: str | None
    key_pinned: bool
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.digest_ok and self.signature == "valid"


def verify_report_file(path: str | Path, *,
                       public_key: PublicKeyLike | None = None) -> ReportVerification:
    """Check a JSON report: its recorded digest against its content, and its ``.sig``."""
    p = Path(path)
    problems: list[str] = []
    try:
        raw = p.read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ComplianceError(f"cannot read report {p}: {exc}") from exc
    if not isinstance(data, dict):
        raise ComplianceError(f"{p} is not a JSON report object")
    digest = content_digest(data)
    recorded = data.get(DIGEST_FIELD)
    digest_ok = recorded == digest
    if not digest_ok:
        problems.append(f"content digest {digest} differs from the recorded {recorded}: the "
                        "report was edited")
    pinned = load_public_key(public_key) if public_key is not None else None
    status, key_id = _check_signature(p, raw, digest, pinned, problems)
    period = data.get("period")
    return ReportVerification(path=str(p), period=period if isinstance(period, str) else None,
                              report_sha256=digest, digest_ok=digest_ok, signature=status,
                              key_id=key_id, key_pinned=pinned is not None,
                              problems=tuple(problems))


def _check_signature(path: Path, raw: bytes, digest: str, pinned: Any,
                     problems: list[str]) -> tuple[SignatureStatus, str | None]:
    sig_path = signature_path(path)
    if not sig_path.exists():
        problems.append(f"no signature file {sig_path.name}")
        return "missing", None
    try:
        sig = json.loads(sig_path.read_text(encoding="utf-8"))
        key = load_public_key(str(sig["public_key"]))
        key_id = str(sig["key_id"])
        signature = bytes.fromhex(str(sig["signature"]))
        signed_file, signed_report = str(sig["file_sha256"]), str(sig["report_sha256"])
    except (OSError, ValueError, KeyError, TypeError, ComplianceError) as exc:
        problems.append(f"unreadable signature file {sig_path.name}: {exc}")
        return "invalid", None
    if key_id_of(key) != key_id:
        problems.append("the signature file's key_id does not match its public key")
        return "invalid", key_id
    if pinned is not None and key_id_of(pinned) != key_id:
        problems.append(f"signed by key {key_id}, not by the trusted key {key_id_of(pinned)}")
        return "untrusted_key", key_id
    try:
        key.verify(signature, _message(signed_file, signed_report))
    except InvalidSignature:
        problems.append("the signature does not verify")
        return "invalid", key_id
    status: SignatureStatus = "valid"
    if signed_file != hashlib.sha256(raw).hexdigest():
        problems.append("the file differs from the one that was signed")
        status = "invalid"
    if signed_report != digest:
        problems.append("the report content differs from the content that was signed")
        status = "invalid"
    return status, key_id
