"""AuditTrail: what the pipeline writes its events through.

It owns the audit policy from ``audit:`` in the config, so the pipeline's code never decides
it: whether events are recorded at all, how query text is kept (plain after PII redaction, or
a keyed hash only), which personal-data patterns are masked in free text, and what a failed
write does (``fail_closed``: raise :class:`AuditWriteError`, the caller gets no result;
``fail_open``: log it, count it in :attr:`AuditTrail.dropped`, carry on).

Given ``erasure:`` settings it also encrypts personal-data payload fields under a key per
subject (the event's actor) before they are written, and decrypts them for readers
(:meth:`AuditTrail.readable`); see :mod:`compliance.erasure`.

Example::

    trail = AuditTrail.from_settings(config.audit, data_dir=config.data_dir,
                                     erasure=config.erasure)
    async with trail:
        fields = trail.query_fields("refund for jane@example.com")
        # {'query': 'refund for [REDACTED:email]', 'query_chars': 26, 'redacted': {'email': 1}}
        await trail.record([AuditEvent("retrieval", "svc-rag", fields, tenant="bank-a")])
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from advanced_rag.config import AuditSettings
from advanced_rag.errors import ConfigError

from ..errors import AuditWriteError
from .checkpoints import CheckpointSigner
from .models import AuditEvent, AuditRecord
from .redaction import redact_text
from .store import AuditStore

if TYPE_CHECKING:
    from advanced_rag.config import ErasureSettings

    from ..erasure.cipher import PayloadCipher

__all__ = ["AuditTrail", "build_store", "query_digest"]

log = logging.getLogger(__name__)


def query_digest(query: str, salt: bytes) -> str:
    """HMAC-SHA256 of the query under the deployment's secret salt (hex). Equal queries give
    equal digests, so "was this asked, and when?" stays answerable without storing the text;
    without the salt, a dictionary of likely queries cannot be hashed to match."""
    return hmac.new(salt, query.encode("utf-8"), hashlib.sha256).hexdigest()


def _signer(settings: AuditSettings) -> CheckpointSigner | None:
    if settings.signing_key_file:
        return CheckpointSigner.from_file(settings.signing_key_file)
    if os.environ.get(settings.signing_key_env):
        return CheckpointSigner.from_env(settings.signing_key_env)
    if settings.checkpoint_every is not None:
        raise ConfigError(f"checkpoint_every needs a signing key: set {settings.signing_key_env} "
                          "or audit.signing_key_file (generate one with `advanced-rag audit keygen`)",
                          key="audit.checkpoint_every")
    return None


def build_store(settings: AuditSettings, *, data_dir: str) -> AuditStore:
    """The :class:`AuditStore` that ``settings`` describe (not opened yet)."""
    return AuditStore(settings.resolved_url(data_dir), schema=settings.db_schema, create=settings.create,
                      signer=_signer(settings), checkpoint_every=settings.checkpoint_every,
                      anchor=settings.anchor, sqlite_synchronous=settings.sqlite_synchronous)


class AuditTrail:
    """Audit policy plus the store it writes to; ``store=None`` records nothing."""

    def __init__(self, store: AuditStore | None, *,
                 on_failure: Literal["fail_closed", "fail_open"] = "fail_closed",
                 redact_pii: bool = True, redact_kinds: Sequence[str] | None = None,
                 query_text: Literal["plain", "salted_hash"] = "plain",
                 query_salt: bytes | None = None, cipher: PayloadCipher | None = None) -> None:
        if query_text == "salted_hash" and not query_salt:
            raise ConfigError("query_text 'salted_hash' needs a secret salt",
                              key="audit.query_salt_env")
        self._store = store
        self._fail_closed = on_failure == "fail_closed"
        self._kinds = tuple(redact_kinds) if redact_kinds is not None else None
        self._redact = redact_pii
        self._hash_queries = query_text == "salted_hash"
        self._salt = query_salt or b""
        self._cipher = cipher if store is not None else None
        self.dropped = 0
        if redact_pii:
            redact_text("", kinds=self._kinds)  # unknown kinds fail now, not on the first query

    @classmethod
    def from_settings(cls, settings: AuditSettings, *, data_dir: str,
                      erasure: ErasureSettings | None = None) -> AuditTrail:
        """The trail ``audit:`` describes; reads the salt and signing key from the environment.
        With ``erasure`` (``config.erasure``) personal data is encrypted per subject, and the
        key-encryption key is read (and validated) from the environment now."""
        salt = None
        if settings.query_text == "salted_hash":
            value = os.environ.get(settings.query_salt_env, "")
            if len(value) < 16:
                raise ConfigError(f"query_text is salted_hash: set {settings.query_salt_env} to a "
                                  "secret of at least 16 characters", key="audit.query_salt_env")
            salt = value.encode("utf-8")
        store = build_store(settings, data_dir=data_dir) if settings.enabled else None
        cipher = None
        if store is not None and erasure is not None:
            from ..erasure.cipher import PayloadCipher
            from ..erasure.keys import SubjectKeys

            cipher = PayloadCipher(SubjectKeys.from_settings(settings, erasure, data_dir=data_dir),
                                   fields=erasure.fields, encrypt=erasure.encrypt_personal_data)
        return cls(store, on_failure=settings.on_failure, redact_pii=settings.redact_pii,
                   redact_kinds=settings.redact_kinds, query_text=settings.query_text,
                   query_salt=salt, cipher=cipher)

    @property
    def enabled(self) -> bool:
        return self._store is not None

    @property
    def store(self) -> AuditStore:
        if self._store is None:
            raise AuditWriteError("auditing is disabled (audit.enabled: false)")
        return self._store

    @property
    def cipher(self) -> PayloadCipher | None:
        """The personal-data cipher (``None``: payloads are written as given)."""
        return self._cipher

    async def open(self) -> AuditTrail:
        if self._store is not None:
            await self._store.open()
        if self._cipher is not None:
            try:
                await self._cipher.open()
            except BaseException:
                if self._store is not None:
                    await self._store.close()
                raise
        return self

    async def close(self) -> None:
        if self._cipher is not None:
            await self._cipher.close()
        if self._store is not None:
            await self._store.close()

    async def __aenter__(self) -> AuditTrail:
        return await self.open()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- what goes into payloads -------------------------------------------------------------

    def text(self, value: str) -> str:
        """Free text as it may be recorded: PII-masked when ``redact_pii`` is on."""
        return redact_text(value, kinds=self._kinds).text if self._redact else value

    def query_fields(self, query: str) -> dict[str, Any]:
        """How a query appears in a payload: its text (masked) or its keyed digest, never both."""
        fields: dict[str, Any] = {"query_chars": len(query)}
        if self._hash_queries:
            fields["query_hmac_sha256"] = query_digest(query, self._salt)
            return fields
        if not self._redact:
            fields["query"] = query
            return fields
        masked = redact_text(query, kinds=self._kinds)
        fields["query"] = masked.text
        if masked.changed:
            fields["redacted"] = dict(masked.counts)
        return fields

    # -- writing -------------------------------------------------------------------------------

    async def record(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        """Append ``events`` as one contiguous run, committed before this returns.

        Returns the records as stored (personal-data fields encrypted; see :meth:`readable`);
        ``[]`` when auditing is disabled, or when the write failed under ``fail_open``. Under
        ``fail_closed`` a failed write raises :class:`AuditWriteError`. An event whose fields
        cannot be encrypted is never written in plaintext: it fails like a failed write.
        """
        if self._store is None or not events:
            return []
        try:
            if self._cipher is not None:
                events = await self._cipher.seal(events)
            return await self._store.append_many(events)
        except Exception as exc:
            if self._fail_closed:
                if isinstance(exc, AuditWriteError):
                    raise
                raise AuditWriteError(f"audit write failed: {type(exc).__name__}: {exc}") from exc
            self.dropped += len(events)
            log.error("audit write failed, %d event(s) NOT recorded (on_failure=fail_open): %s: %s",
                      len(events), type(exc).__name__, exc)
            return []

    # -- reading ---------------------------------------------------------------------------------

    async def readable(self, records: Sequence[AuditRecord], *,
                       copy: bool = True) -> list[AuditRecord]:
        """``records`` as people should see them: personal-data fields decrypted, or
        ``"[erased]"`` where the subject's key was destroyed. ``payload_json`` keeps the
        stored (encrypted, hashed) text, so verification and export never need keys.
        ``copy=False``: decrypt on the given records (fresh from the store) instead of copies."""
        if self._cipher is None:
            return list(records)
        return await self._cipher.readable(records, copy=copy)
