"""Legal holds: records under a hold are kept whatever the retention policy says, and are not
erased, until the hold is released. Holds are rows of ``legal_holds`` in the audit database;
placing and releasing one is audited by :class:`~compliance.manager.ComplianceManager`.

A hold's scope is one of: a ``tenant``, a ``document`` (tenant + doc id), a ``subject`` (a data
subject — stored as a SHA-256 reference, never the identifier itself) or a ``time_range``
(records whose time falls in ``[start, end)``; optionally limited to a tenant).

Example::

    holds = await LegalHolds.open(config)
    hold = await holds.place("tenant", tenant="bank-a", reason="SEC inquiry 2026-17", actor="legal")
    [h.id for h in await holds.active()]
    await holds.release(hold.id, actor="legal", reason="inquiry closed")
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Engine, String, Text, update
from sqlmodel import Column, Field, Session, SQLModel, select

from advanced_rag.errors import InputError

from ..audit.engine import engine_with_tables
from ..audit.models import UTCDateTime

if TYPE_CHECKING:
    from advanced_rag.config import PipelineConfig

__all__ = ["Hold", "HoldScope", "LegalHoldRow", "LegalHolds", "covered", "subject_ref"]

HoldScope = Literal["tenant", "document", "subject", "time_range"]
SCOPES: tuple[str, ...] = ("tenant", "document", "subject", "time_range")


def subject_ref(subject: str) -> str:
    """How a data subject is named in holds and erasure records: SHA-256 of the identifier."""
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()


class LegalHoldRow(SQLModel, table=True):
    """Table ``legal_holds``."""

    __tablename__ = "legal_holds"

    id: str = Field(sa_column=Column(String(36), primary_key=True))
    scope: str = Field(sa_column=Column(String(16), nullable=False))
    tenant: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    doc_id: str | None = Field(default=None, sa_column=Column(String(512), nullable=True))
    subject_ref: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    start: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    end: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    placed_by: str = Field(sa_column=Column(String(256), nullable=False))
    placed_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    released_by: str | None = Field(default=None, sa_column=Column(String(256), nullable=True))
    released_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(),
                                                                        nullable=True))
    release_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


@dataclass(frozen=True, slots=True)
class Hold:
    """One active hold (see the module docstring for the scopes)."""

    id: str
    scope: str
    tenant: str | None
    doc_id: str | None
    subject_ref: str | None
    start: datetime | None
    end: datetime | None
    reason: str
    placed_by: str
    placed_at: datetime

    def covers(self, *, tenant: str | None = None, doc_id: str | None = None,
               subject: str | None = None, at: datetime | None = None) -> bool:
        """Whether a record with these attributes is held (unknown attributes never match)."""
        if self.scope == "tenant":
            return tenant is not None and tenant == self.tenant
        if self.scope == "document":
            return doc_id is not None and doc_id == self.doc_id and (
                self.tenant is None or tenant == self.tenant)
        if self.scope == "subject":
            return subject is not None and subject_ref(subject) == self.subject_ref
        if at is None or (self.tenant is not None and tenant != self.tenant):
            return False
        return ((self.start is None or at >= self.start) and
                (self.end is None or at < self.end))

    def describe(self) -> str:
        what = {"tenant": f"tenant {self.tenant}",
                "document": f"document {self.doc_id}" + (f" of {self.tenant}" if self.tenant
                                                          else ""),
                "subject": f"subject {str(self.subject_ref)[:12]}…",
                "time_range": f"records from {self.start} to {self.end}" + (
                    f" of {self.tenant}" if self.tenant else "")}[self.scope]
        return f"legal hold {self.id} on {what}: {self.reason}"


def covered(holds: Sequence[Hold], **record: object) -> Hold | None:
    """The first hold covering a record (``tenant=``, ``doc_id=``, ``subject=``, ``at=``)."""
    for hold in holds:
        if hold.covers(**record):  # type: ignore[arg-type]
            return hold
    return None


def _hold(row: LegalHoldRow) -> Hold:
    return Hold(row.id, row.scope, row.tenant, row.doc_id, row.subject_ref, row.start, row.end,
                row.reason, row.placed_by, row.placed_at)


class LegalHolds:
    """The ``legal_holds`` table (blocking SQL in a worker thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, config: PipelineConfig) -> LegalHolds:
        engine = await asyncio.to_thread(
            engine_with_tables, config.audit.resolved_url(config.data_dir),
            [LegalHoldRow.__table__], schema=config.audit.db_schema,  # type: ignore[attr-defined]
            sqlite_synchronous=config.audit.sqlite_synchronous)
        return cls(engine)

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.dispose)

    async def place(self, scope: HoldScope, *, reason: str, actor: str, tenant: str | None = None,
                    doc_id: str | None = None, subject: str | None = None,
                    start: datetime | None = None, end: datetime | None = None) -> Hold:
        """Place a hold; the arguments a scope needs are required, others refused."""
        if scope not in SCOPES:
            raise InputError(f"hold scope {scope!r} is not one of {', '.join(SCOPES)}")
        if not reason or not reason.strip():
            raise InputError("a legal hold needs a reason")
        needs = {"tenant": tenant is not None, "document": doc_id is not None,
                 "subject": subject is not None,
                 "time_range": start is not None or end is not None}
        if not needs[scope]:
            raise InputError({"tenant": "a tenant hold needs tenant=",
                              "document": "a document hold needs doc_id= (and tenant=)",
                              "subject": "a subject hold needs subject=",
                              "time_range": "a time-range hold needs start= and/or end="}[scope])
        for name, value in (("start", start), ("end", end)):
            if value is not None and value.utcoffset() is None:
                raise InputError(f"{name} must be timezone-aware (UTC)")
        row = LegalHoldRow(id=str(uuid.uuid4()), scope=scope, tenant=tenant, doc_id=doc_id,
                           subject_ref=subject_ref(subject) if subject is not None else None,
                           start=start, end=end, reason=reason.strip(), placed_by=actor,
                           placed_at=datetime.now(UTC))

        def write() -> None:
            with Session(self.engine, expire_on_commit=False) as session:
                session.add(row)
                session.commit()
        await asyncio.to_thread(write)
        return _hold(row)

    async def release(self, hold_id: str, *, actor: str, reason: str) -> Hold:
        """Release an active hold (kept in the table with who released it, when and why)."""
        def write() -> Hold | None:
            with Session(self.engine) as session:
                row = session.get(LegalHoldRow, hold_id)
                if row is None or row.released_at is not None:
                    return None
                hold = _hold(row)
                session.execute(update(LegalHoldRow).where(
                    LegalHoldRow.id == hold_id).values(  # type: ignore[arg-type]
                    released_by=actor, released_at=datetime.now(UTC), release_reason=reason))
                session.commit()
                return hold
        released = await asyncio.to_thread(write)
        if released is None:
            raise InputError(f"no active legal hold with id {hold_id!r}")
        return released

    async def active(self) -> list[Hold]:
        def read() -> list[Hold]:
            statement = select(LegalHoldRow).where(
                LegalHoldRow.released_at.is_(None))  # type: ignore[union-attr]
            with Session(self.engine) as session:
                return [_hold(r) for r in session.exec(statement).all()]
        return await asyncio.to_thread(read)
