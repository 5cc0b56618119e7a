"""The single-scheduler lock: one row of a small ``scheduler_lock`` table, in the scheduler's
database (``scheduler.url`` or the audit database).

APScheduler 3.x cannot share one job store between two schedulers, so
:func:`~compliance.scheduling.run_scheduler` takes this lock first, renews it every
``lock_ttl_s / 3`` seconds and releases it on a clean stop; a second scheduler refuses to
start with :class:`~compliance.errors.SchedulerLockedError` until the first has stopped or its
lock has expired.

Example::

    lock = SchedulerLock.for_config(config)
    await lock.install()
    expires_at = await lock.acquire()      # or SchedulerLockedError naming the holder
    ...
    await lock.release()
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from advanced_rag.config import PipelineConfig
from advanced_rag.errors import ConfigError

from .audit.engine import WRITE_OPTION, make_engine
from .audit.models import UTCDateTime
from .errors import SchedulerError, SchedulerLockedError

__all__ = ["LOCK_TABLE", "LockState", "SchedulerLock", "keep_lock", "scheduler_database"]

log = logging.getLogger(__name__)

LOCK_TABLE = "scheduler_lock"
_LOCK_NAME = "scheduler"
_PG_INSTALL_LOCK = 0x7363_6865_6475_6C65  # pg_advisory_xact_lock key of the lock table's DDL


@dataclass(frozen=True, slots=True)
class LockState:
    """Who holds the scheduler lock (``host:pid``) and until when (UTC)."""

    holder: str
    acquired_at: datetime
    expires_at: datetime


def _lock_table(schema: str | None) -> Table:
    return Table(LOCK_TABLE, MetaData(schema=schema),
                 Column("name", String(64), primary_key=True),
                 Column("holder", String(255), nullable=False),
                 Column("token", String(32), nullable=False),
                 Column("acquired_at", UTCDateTime(), nullable=False),
                 Column("expires_at", UTCDateTime(), nullable=False))


@dataclass(frozen=True, slots=True)
class _Database:
    url: URL
    schema: str | None
    sqlite_synchronous: str

    def engine(self) -> Engine:
        return make_engine(self.url, schema=self.schema,
                           sqlite_synchronous=self.sqlite_synchronous, busy_timeout_s=30.0)


def scheduler_database(config: PipelineConfig) -> _Database:
    own = config.scheduler.url
    raw = own or config.audit.resolved_url(config.data_dir)
    key = "scheduler.url" if own else "audit.url"
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise ConfigError(f"not a database URL: {exc}", key=key) from None
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"unsupported scheduler database {backend!r}: use sqlite or postgresql",
                          key=key)
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        raise ConfigError("the scheduler needs a SQLite file, not an in-memory database", key=key)
    schema = config.audit.db_schema if not own and backend == "postgresql" else None
    sync = "FULL" if own else config.audit.sqlite_synchronous
    return _Database(url, schema, sync)


class SchedulerLock:
    """One row of ``scheduler_lock``: whoever holds an unexpired row is *the* scheduler.

    Acquiring is one atomic upsert: insert the row, or overwrite it only where ``expires_at``
    has passed (``INSERT … ON CONFLICT (name) DO UPDATE … WHERE expires_at <= now``). On
    PostgreSQL the conflicting row is locked and the ``WHERE`` re-checked on its latest
    version, so of two racing schedulers exactly one gets a row back; on SQLite the statement
    runs under ``BEGIN IMMEDIATE``, the database-wide write lock. Times are the database's
    clock on PostgreSQL (hosts may disagree), the local clock on SQLite (one host). Renewal and
    release match the holder's random token, so a scheduler that lost its lock can neither
    extend nor delete its successor's. Methods are blocking SQL run through a worker thread.

    Example::

        lock = SchedulerLock.for_config(config)
        await lock.install()
        await lock.acquire()   # SchedulerLockedError naming the holder when taken
        ...
        await lock.release()
        await lock.close()
    """

    def __init__(self, engine: Engine, *, ttl_s: float, schema: str | None = None,
                 holder: str | None = None, name: str = _LOCK_NAME) -> None:
        self.engine = engine
        self.ttl = timedelta(seconds=ttl_s)
        self.schema = schema
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.name = name
        self.token = uuid.uuid4().hex
        self.table = _lock_table(schema)

    @classmethod
    def for_config(cls, config: PipelineConfig, *, holder: str | None = None) -> SchedulerLock:
        """The lock in ``scheduler.url`` or the audit database (owns its engine)."""
        db = scheduler_database(config)
        return cls(db.engine(), ttl_s=config.scheduler.lock_ttl_s, schema=db.schema,
                   holder=holder)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self.engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, \
                    conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise SchedulerError(f"scheduler lock on {self.engine.url!r}: {exc}") from exc

    @staticmethod
    def _now(conn: Connection) -> datetime:
        if conn.dialect.name == "postgresql":
            moment = conn.scalar(text("SELECT now()"))
            assert isinstance(moment, datetime)
            return moment.astimezone(UTC)
        return datetime.now(UTC)

    def _install(self) -> None:
        with self._write() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_INSTALL_LOCK})
                exists = self.schema is None or conn.scalar(
                    text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": self.schema})
                if not exists:  # only when missing: IF NOT EXISTS still needs database CREATE
                    conn.exec_driver_sql(f'CREATE SCHEMA "{self.schema}"')  # validated name
            self.table.metadata.create_all(conn, checkfirst=True)

    def _acquire(self) -> datetime:
        t = self.table
        with self._write() as conn:
            now = self._now(conn)
            expires = now + self.ttl
            insert = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(t)
            insert = insert.values(name=self.name, holder=self.holder, token=self.token,
                                   acquired_at=now, expires_at=expires)
            upsert = insert.on_conflict_do_update(
                index_elements=[t.c.name],
                set_={c: insert.excluded[c] for c in ("holder", "token", "acquired_at",
                                                      "expires_at")},
                where=t.c.expires_at <= now).returning(t.c.token)
            if conn.execute(upsert).first() is None:
                row = conn.execute(select(t.c.holder, t.c.expires_at)
                                   .where(t.c.name == self.name)).one()
                raise SchedulerLockedError(row.holder, row.expires_at.replace(microsecond=0))
        return expires

    def _renew(self) -> bool:
        t = self.table
        with self._write() as conn:
            expires = self._now(conn) + self.ttl
            result = conn.execute(t.update().where(t.c.name == self.name, t.c.token == self.token)
                                  .values(expires_at=expires))
            return bool(result.rowcount)

    def _release(self) -> bool:
        t = self.table
        with self._write() as conn:
            result = conn.execute(t.delete().where(t.c.name == self.name,
                                                   t.c.token == self.token))
            return bool(result.rowcount)

    def _state(self) -> LockState | None:
        t = self.table
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.holder, t.c.acquired_at, t.c.expires_at)
                               .where(t.c.name == self.name)).first()
        return None if row is None else LockState(row.holder, row.acquired_at, row.expires_at)

    async def install(self) -> None:
        """Create the schema (PostgreSQL) and the ``scheduler_lock`` table if missing."""
        await asyncio.to_thread(self._install)

    async def acquire(self) -> datetime:
        """Take the lock; returns its expiry, or raises :class:`SchedulerLockedError`."""
        return await asyncio.to_thread(self._acquire)

    async def renew(self) -> bool:
        """Push the expiry ``ttl`` ahead; ``False`` when another scheduler took the lock."""
        return await asyncio.to_thread(self._renew)

    async def release(self) -> bool:
        """Delete the row if this lock still holds it; ``True`` when it did."""
        return await asyncio.to_thread(self._release)

    async def state(self) -> LockState | None:
        """The row as it stands (whoever holds it), or ``None``."""
        return await asyncio.to_thread(self._state)

    async def close(self) -> None:
        await asyncio.to_thread(self.engine.dispose)


async def keep_lock(lock: SchedulerLock, stop: asyncio.Event, lost: asyncio.Event) -> None:
    """Renew every ttl/3; on losing the lock (or failing to renew before it would lapse),
    stop the scheduler so that two never run jobs at once."""
    ttl = lock.ttl.total_seconds()
    deadline = time.monotonic() + ttl
    while True:
        await asyncio.sleep(max(0.0, min(ttl / 3, deadline - time.monotonic())))
        began = time.monotonic()
        try:
            held = await lock.renew()
        except Exception as exc:
            if time.monotonic() < deadline:
                log.warning("could not renew the scheduler lock (will retry): %s", exc)
                continue
            log.error("could not renew the scheduler lock before it lapsed; stopping: %s", exc)
            held = False
        if not held:
            log.error("the scheduler lock was lost (expired and taken over); stopping")
            lost.set()
            stop.set()
            return
        deadline = began + ttl
