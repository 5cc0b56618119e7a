"""Per-subject data keys in the ``subject_keys`` table of the audit database.

One row per key: ``key_id`` (UUID4), ``subject_ref`` (SHA-256 of the subject id, never the id
itself), ``key_material`` (the 32-byte key, wrapped under the KEK, or raw when no KEK is set;
NULL once destroyed), ``wrapping``, ``kek_id``, ``created_at`` and, once erased,
``destroyed_at`` / ``destroyed_by`` / ``reason``. A subject has at most one live key (a partial
unique index); after an erasure the row stays as the record of it, and a subject seen again
gets a fresh key.

Writers cache a subject's live key in memory for ``cache_ttl_s`` (default 60 s) so recording
an event costs one dict lookup. A key destroyed by *another* process may therefore still be
used for up to that long; what it encrypts is unreadable as soon as the key row is gone.
Readers never use the cache: they load the keys of the subjects they show on every call, so a
destroyed key is never used to show data.

Without a KEK (``erasure.key_encryption_key_env`` unset in the environment) keys are stored
unwrapped: anyone who can read the table can read every payload. Production must set it and
keep the KEK outside the database (a secrets manager); losing it makes every payload
unreadable.

PostgreSQL grants: the application needs SELECT, INSERT, UPDATE on ``subject_keys``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, Index, LargeBinary, String, Text, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Column, Field, SQLModel

from advanced_rag.errors import ConfigError

from ..audit.engine import WRITE_OPTION, make_engine
from ..audit.models import UTCDateTime
from ..errors import AuditWriteError, RetentionError
from ..retention.holds import subject_ref
from .crypto import EnvelopeError, kek_id, key_aad, load_kek, new_data_key, unwrap_key, wrap_key

if TYPE_CHECKING:
    from advanced_rag.config import AuditSettings, ErasureSettings

__all__ = ["ActiveKey", "KeyInfo", "SubjectKeyRow", "SubjectKeys", "subject_ref"]

log = logging.getLogger(__name__)
WRAPPED, RAW = "kek-aes-256-gcm", "none"
_warned_unwrapped = False


class SubjectKeyRow(SQLModel, table=True):
    """Table ``subject_keys`` (see the module docstring)."""

    __tablename__ = "subject_keys"
    __table_args__ = (
        Index("ix_subject_keys_subject", "subject_ref"),
        Index("ux_subject_keys_live", "subject_ref", unique=True,
              sqlite_where=text("destroyed_at IS NULL"),
              postgresql_where=text("destroyed_at IS NULL")),
    )

    key_id: str = Field(sa_column=Column(String(36), primary_key=True))
    subject_ref: str = Field(sa_column=Column(String(64), nullable=False))
    key_material: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    wrapping: str = Field(sa_column=Column(String(32), nullable=False))
    kek_id: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    destroyed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(),
                                                                         nullable=True))
    destroyed_by: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


_TABLE = SubjectKeyRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """A subject's live key, ready to encrypt with."""

    kid: str
    subject_ref: str
    aead: AESGCM
    expires: float  # time.monotonic() after which the cache re-reads the row


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One key row without its material (what ``erasure status`` shows)."""

    kid: str
    subject_ref: str
    wrapping: str
    kek_id: str | None
    created_at: datetime
    destroyed_at: datetime | None
    destroyed_by: str | None
    reason: str | None

    @property
    def destroyed(self) -> bool:
        return self.destroyed_at is not None


def _info(row: Any) -> KeyInfo:
    return KeyInfo(row.key_id, row.subject_ref, row.wrapping, row.kek_id, row.created_at,
                   row.destroyed_at, row.destroyed_by, row.reason)


class SubjectKeys:
    """Get-or-create, load, and destroy subject keys (blocking SQL in worker threads)."""

    def __init__(self, url: str, *, schema: str | None = None, create: bool = True,
                 kek: bytes | None = None, kek_env: str = "ADVANCED_RAG_KEK",
                 sqlite_synchronous: str = "FULL", cache_ttl_s: float = 60.0) -> None:
        self._url = make_url(url)
        self._schema, self._create, self._sync = schema, create, sqlite_synchronous
        self._kek, self._kek_env = kek, kek_env
        self._kek_id = None if kek is None else kek_id(kek)
        self._ttl = cache_ttl_s
        self._cache: dict[str, ActiveKey] = {}  # actor -> live key
        self._engine: Engine | None = None

    @classmethod
    def from_settings(cls, audit: AuditSettings, erasure: ErasureSettings, *,
                      data_dir: str) -> SubjectKeys:
        """Keys in the audit database; the KEK is read from the environment (and validated)
        now, so a bad one fails at start-up, not at the first recorded event."""
        return cls(audit.resolved_url(data_dir), schema=audit.db_schema, create=audit.create,
                   kek=load_kek(erasure.key_encryption_key_env),
                   kek_env=erasure.key_encryption_key_env,
                   sqlite_synchronous=audit.sqlite_synchronous)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise AuditWriteError("the subject key store is not open")
        return self._engine

    @property
    def wrapped(self) -> bool:
        """Whether new keys are wrapped under a KEK."""
        return self._kek is not None

    async def open(self) -> SubjectKeys:
        global _warned_unwrapped
        if self._engine is None:
            try:
                self._engine = await asyncio.to_thread(self._install)
            except SQLAlchemyError as exc:
                raise AuditWriteError(f"cannot open the subject key table: {exc}") from exc
            if self._kek is None and not _warned_unwrapped:
                _warned_unwrapped = True
                log.warning("erasure: %s is not set, so subject keys are stored UNWRAPPED in the "
                            "audit database; set it in production", self._kek_env)
        return self

    def _install(self) -> Engine:
        engine = make_engine(self._url, schema=self._schema, sqlite_synchronous=self._sync,
                             busy_timeout_s=30.0)
        try:
            with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
                if self._create:
                    SQLModel.metadata.create_all(conn, tables=[_TABLE])
                elif "subject_keys" not in inspect(conn).get_table_names(schema=self._schema):
                    raise AuditWriteError("table subject_keys is missing; open the audit store "
                                          "once with create=True as the schema owner")
        except BaseException:
            engine.dispose()
            raise
        return engine

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        self._cache.clear()
        if engine is not None:
            await asyncio.to_thread(engine.dispose)

    # -- keys ------------------------------------------------------------------------------

    def _material(self, row: Any) -> bytes:
        """The raw key of a live row (unwrapped); refuses a KEK mismatch with a clear error."""
        blob = bytes(row.key_material)
        if row.wrapping == RAW:
            return blob
        if self._kek is None:
            raise ConfigError(f"subject key {row.key_id} is wrapped under key-encryption key "
                              f"{row.kek_id}, but {self._kek_env} is not set",
                              key="erasure.key_encryption_key_env")
        if row.kek_id != self._kek_id:
            raise ConfigError(f"subject key {row.key_id} is wrapped under key-encryption key "
                              f"{row.kek_id}, but {self._kek_env} holds key {self._kek_id}: set "
                              "the key the subject keys were wrapped with",
                              key="erasure.key_encryption_key_env")
        try:
            return unwrap_key(self._kek, blob, aad=key_aad(row.key_id, row.subject_ref))
        except EnvelopeError as exc:
            raise RetentionError(f"subject key {row.key_id} cannot be unwrapped ({exc}): the row "
                                 "was altered or moved") from exc

    def _new_row(self, ref: str) -> dict[str, Any]:
        kid = str(uuid.uuid4())
        key = new_data_key()
        if self._kek is None:
            return {"key_id": kid, "subject_ref": ref, "key_material": key, "wrapping": RAW,
                    "kek_id": None, "created_at": datetime.now(UTC)}
        return {"key_id": kid, "subject_ref": ref, "wrapping": WRAPPED, "kek_id": self._kek_id,
                "key_material": wrap_key(self._kek, key, aad=key_aad(kid, ref)),
                "created_at": datetime.now(UTC)}

    def _live_row(self, ref: str) -> Any:
        live = select(_TABLE).where(_TABLE.c.subject_ref == ref, _TABLE.c.destroyed_at.is_(None))
        with self.engine.connect() as conn:
            row = conn.execute(live).first()
        if row is not None:
            return row
        try:
            with self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, \
                    conn.begin():
                row = conn.execute(live).first()
                if row is None:
                    conn.execute(_TABLE.insert().values(self._new_row(ref)))
                    row = conn.execute(live).first()
        except IntegrityError:  # another process created it between our read and insert
            with self.engine.connect() as conn:
                row = conn.execute(live).first()
        if row is None:
            raise AuditWriteError(f"could not create a key for subject {ref[:12]}…")
        return row

    def cached(self, actor: str) -> ActiveKey | None:
        """The live key of ``actor`` if cached and fresh (no I/O: the hot path)."""
        hit = self._cache.get(actor)
        return hit if hit is not None and hit.expires > time.monotonic() else None

    async def active(self, actor: str) -> ActiveKey:
        """``actor``'s live key, created on first use; cached for ``cache_ttl_s``."""
        hit = self.cached(actor)
        if hit is not None:
            return hit
        ref = subject_ref(actor)
        row = await asyncio.to_thread(self._live_row, ref)
        key = ActiveKey(row.key_id, ref, AESGCM(self._material(row)),
                        time.monotonic() + self._ttl)
        self._cache[actor] = key
        return key

    async def readers(self, refs: Iterable[str]) -> dict[str, AESGCM | None]:
        """Every key (live or destroyed) of these subjects, fresh from the database:
        ``kid -> AESGCM``, or ``None`` for a destroyed key."""
        wanted = sorted(set(refs))
        if not wanted:
            return {}

        def read() -> list[Any]:
            rows: list[Any] = []
            with self.engine.connect() as conn:
                for i in range(0, len(wanted), 500):
                    rows += conn.execute(select(_TABLE).where(
                        _TABLE.c.subject_ref.in_(wanted[i:i + 500]))).all()
            return rows

        out: dict[str, AESGCM | None] = {}
        for row in await asyncio.to_thread(read):
            gone = row.destroyed_at is not None or row.key_material is None
            out[row.key_id] = None if gone else AESGCM(self._material(row))
        return out

    async def infos(self, ref: str) -> list[KeyInfo]:
        """The key rows of one subject, oldest first, without key material."""
        def read() -> list[Any]:
            with self.engine.connect() as conn:
                return list(conn.execute(select(_TABLE).where(_TABLE.c.subject_ref == ref)
                                         .order_by(_TABLE.c.created_at)).all())
        return [_info(r) for r in await asyncio.to_thread(read)]

    def forget(self, ref: str) -> None:
        """Drop every cached key of subject ``ref`` (after destroying it)."""
        for actor in [a for a, k in self._cache.items() if k.subject_ref == ref]:
            del self._cache[actor]


def destroy_statement(ref: str, *, actor: str, reason: str, when: datetime) -> Any:
    """The UPDATE that destroys every live key of ``ref`` (material NULL, who/when/why set)."""
    return (update(_TABLE).where(_TABLE.c.subject_ref == ref, _TABLE.c.destroyed_at.is_(None))
            .values(key_material=None, destroyed_at=when, destroyed_by=actor, reason=reason))


def live_kids_statement(ref: str) -> Any:
    return select(_TABLE.c.key_id).where(_TABLE.c.subject_ref == ref,
                                         _TABLE.c.destroyed_at.is_(None))
