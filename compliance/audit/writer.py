"""The write path: one transaction per group of appends, and the group commit that feeds it.

:class:`ChainWriter` is synchronous and runs on the store's single writer thread. Each call
takes the chain-head lock (PostgreSQL ``SELECT … FROM audit_head WHERE id = 1 FOR UPDATE``;
SQLite ``BEGIN IMMEDIATE``), numbers and hashes the events from the locked head, inserts them,
moves the head and commits. Because the lock lives in the database, writers in other
processes queue on it too: one linear chain, no gaps, no forks.

:class:`GroupCommitter` is the asyncio side. ``append`` puts the event and a future on a
queue and awaits the future. One writer task takes *everything queued* (up to
``max_events``), runs it as one transaction, then resolves each future with its own records.
While a transaction runs, new appends pile up and ride the next one, so under load the cost
of a commit (an fsync) is shared by many callers without any timer or added latency. If a
group's transaction fails, its units are retried one transaction each, so one bad event
fails only its own caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, update

from ..errors import AuditWriteError
from .checkpoints import CheckpointSigner, append_anchor
from .engine import WRITE_OPTION
from .hashing import chain_hash, entry_bytes
from .models import (
    AuditCheckpointRow,
    AuditEvent,
    AuditEventRow,
    AuditEventType,
    AuditRecord,
    Checkpoint,
)

__all__ = ["AppendUnit", "ChainWriter", "CheckpointUnit", "GroupCommitter"]

log = logging.getLogger(__name__)

_EVENTS = AuditEventRow.__table__  # type: ignore[attr-defined]
_CHECKPOINTS = AuditCheckpointRow.__table__  # type: ignore[attr-defined]


@dataclass(slots=True)
class AppendUnit:
    """Events that must be contiguous and committed together."""

    events: Sequence[AuditEvent]
    future: asyncio.Future[list[AuditRecord]] | None = None


@dataclass(slots=True)
class CheckpointUnit:
    """Sign the head as it stands after the units queued before this one."""

    signer: CheckpointSigner
    anchor: Path | None
    future: asyncio.Future[Checkpoint] | None = None


Unit = AppendUnit | CheckpointUnit


@dataclass(slots=True)
class _Pending:
    anchors: list[tuple[Path, Checkpoint, str]] = field(default_factory=list)


_INSERT = ("INSERT INTO audit_events (seq, event_id, occurred_at, event_type, actor, tenant, "
           "request_id, parent_event_id, payload, payload_digest, prev_hash, entry_hash) "
           "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})")
_PARAMSTYLE = {"sqlite": "?", "postgresql": "%s"}
_LOCK_HEAD = {"sqlite": "SELECT seq, entry_hash FROM audit_head WHERE id = 1",
              "postgresql": "SELECT seq, entry_hash FROM audit_head WHERE id = 1 FOR UPDATE"}
_MOVE_HEAD = "UPDATE audit_head SET seq = {p}, entry_hash = {p} WHERE id = 1"


def _record(event: AuditEvent, seq: int, prev_hash: str) -> tuple[AuditRecord, str]:
    """The record for ``event`` at ``seq``, and its time as RFC 3339 text."""
    occurred = event.occurred_at
    assert occurred is not None  # set (UTC) by AuditEvent.__post_init__
    when = occurred.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    kind = event.event_type if isinstance(event.event_type, AuditEventType) else (
        AuditEventType(event.event_type))
    entry = entry_bytes(seq, event.event_id, when, kind.value, event.actor, event.tenant,
                        event.request_id, event.parent_event_id, event.payload_digest)
    record = AuditRecord._trusted({
        "seq": seq, "event_id": event.event_id, "occurred_at": occurred, "event_type": kind,
        "actor": event.actor, "tenant": event.tenant, "request_id": event.request_id,
        "parent_event_id": event.parent_event_id, "payload_json": event.canonical_payload,
        "payload_digest": event.payload_digest, "prev_hash": prev_hash,
        "entry_hash": chain_hash(prev_hash, entry)})
    return record, when


def _row(record: AuditRecord, when: str, sqlite: bool) -> tuple[Any, ...]:
    # SQLite gets the exact text SQLAlchemy's DateTime writes (naive UTC, space, 6 digits),
    # so rows written here and rows read through the models agree.
    occurred: Any = when[:10] + " " + when[11:-1] if sqlite else record.occurred_at
    return (record.seq, record.event_id, occurred, record.event_type.value, record.actor,
            record.tenant, record.request_id, record.parent_event_id, record.payload_json,
            record.payload_digest, record.prev_hash, record.entry_hash)


def _as_write_error(exc: BaseException) -> AuditWriteError:
    if isinstance(exc, AuditWriteError):
        return exc
    error = AuditWriteError(f"audit write failed, nothing was written: {exc}")
    error.__cause__ = exc
    return error


class ChainWriter:
    """Synchronous transactions on the chain (call from one thread at a time)."""

    def __init__(self, engine: Engine, *, signer: CheckpointSigner | None = None,
                 checkpoint_every: int | None = None, anchor: Path | None = None) -> None:
        if checkpoint_every is not None and (signer is None or checkpoint_every < 1):
            raise ValueError("checkpoint_every needs a signer and a value >= 1")
        self._engine = engine
        self._signer = signer
        self._every = checkpoint_every
        self._anchor = anchor

    def write(self, units: Sequence[Unit]) -> list[object]:
        """Commit ``units`` in one transaction; per unit its result or its :class:`AuditWriteError`."""
        try:
            return self._transaction(units)
        except Exception as exc:  # turned into per-unit results below
            if len(units) == 1:
                return [_as_write_error(exc)]
        results: list[object] = []
        for unit in units:  # isolate the culprit: one transaction per unit
            try:
                results.extend(self._transaction([unit]))
            except Exception as exc:
                results.append(_as_write_error(exc))
        return results

    def redact(self, seq: int) -> bool:
        """Set ``payload`` to NULL at ``seq`` (the one mutation the guards allow)."""
        with self._engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            result = conn.execute(update(_EVENTS).where(_EVENTS.c.seq == seq).values(payload=None))
            return bool(result.rowcount)

    def _transaction(self, units: Sequence[Unit]) -> list[object]:
        pending = _Pending()
        with self._engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                results = self._append(conn, cursor, units, pending)
            finally:
                cursor.close()
        self._write_anchors(pending, units, results)
        return results

    def _append(self, conn: Connection, cursor: Any, units: Sequence[Unit],
                pending: _Pending) -> list[object]:
        dialect = conn.dialect.name
        # The chain lock: FOR UPDATE on PostgreSQL; on SQLite BEGIN IMMEDIATE already holds it.
        cursor.execute(_LOCK_HEAD[dialect])
        head = cursor.fetchone()
        if head is None:
            raise AuditWriteError("audit_head is missing: open the store with create=True once")
        start, seq, prev = int(head[0]), int(head[0]), str(head[1])
        rows: list[tuple[Any, ...]] = []
        results: list[object] = []
        for unit in units:
            if isinstance(unit, AppendUnit):
                records = []
                for event in unit.events:
                    seq += 1
                    record, when = _record(event, seq, prev)
                    prev = record.entry_hash
                    records.append(record)
                    rows.append(_row(record, when, dialect == "sqlite"))
                results.append(records)
                continue
            self._flush(cursor, dialect, rows)  # the checkpoint trigger needs the rows present
            if seq == 0:
                raise AuditWriteError("nothing to checkpoint: the audit chain is empty")
            results.append(self._checkpoint(conn, unit.signer, seq, prev, unit.anchor, pending))
        self._flush(cursor, dialect, rows)
        if self._signer is not None and self._every and seq // self._every > start // self._every:
            self._checkpoint(conn, self._signer, seq, prev, self._anchor, pending)
        if seq != start:
            cursor.execute(_MOVE_HEAD.format(p=_PARAMSTYLE[dialect]), (seq, prev))
        return results

    @staticmethod
    def _flush(cursor: Any, dialect: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert through the driver's executemany, inside the SQLAlchemy transaction: the
        hot path of appends, where SQLAlchemy's per-row parameter processing cost ~40 %."""
        if rows:
            cursor.executemany(_INSERT.format(p=_PARAMSTYLE[dialect]), rows)
            rows.clear()

    @staticmethod
    def _checkpoint(conn: Connection, signer: CheckpointSigner, seq: int, head_hash: str,
                    anchor: Path | None, pending: _Pending) -> Checkpoint:
        checkpoint = signer.sign(seq, head_hash, datetime.now(UTC))
        conn.execute(insert(_CHECKPOINTS).values(
            seq=checkpoint.seq, head_hash=checkpoint.head_hash, created_at=checkpoint.created_at,
            signature=checkpoint.signature, key_id=checkpoint.key_id))
        if anchor is not None:
            pending.anchors.append((anchor, checkpoint, signer.public_key_hex))
        return checkpoint

    @staticmethod
    def _write_anchors(pending: _Pending, units: Sequence[Unit], results: list[object]) -> None:
        # After commit: an anchor line must never name a head the database does not have.
        for path, checkpoint, public_key_hex in pending.anchors:
            try:
                append_anchor(path, checkpoint, public_key_hex)
            except OSError as exc:
                message = (f"checkpoint at seq {checkpoint.seq} is committed but the anchor line "
                           f"could not be written to {path}: {exc}")
                log.error(message)
                for i, unit in enumerate(units):
                    if isinstance(unit, CheckpointUnit) and results[i] is checkpoint:
                        results[i] = AuditWriteError(message)


class GroupCommitter:
    """Coalesces concurrent appends into shared transactions on one executor thread."""

    def __init__(self, writer: ChainWriter, executor: Executor, *, max_events: int = 5000) -> None:
        self._writer = writer
        self._executor = executor
        self._max = max_events
        self._queue: asyncio.Queue[Unit | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-group-commit")

    async def submit_append(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        future: asyncio.Future[list[AuditRecord]] = asyncio.get_running_loop().create_future()
        self._put(AppendUnit(events, future))
        return await future

    async def submit_checkpoint(self, signer: CheckpointSigner, anchor: Path | None) -> Checkpoint:
        future: asyncio.Future[Checkpoint] = asyncio.get_running_loop().create_future()
        self._put(CheckpointUnit(signer, anchor, future))
        return await future

    def _put(self, unit: Unit) -> None:
        if self._task is None or self._task.done():
            raise AuditWriteError("the audit store is not open")
        self._queue.put_nowait(unit)

    async def close(self) -> None:
        """Commit everything queued so far, then stop the writer task."""
        if self._task is None:
            return
        if not self._task.done():
            self._queue.put_nowait(None)
        task, self._task = self._task, None
        await task

    async def _run(self) -> None:
        try:
            while await self._commit_next_group():
                pass
        finally:
            # Whatever is still queued will never be written: tell its callers so.
            while not self._queue.empty():
                unit = self._queue.get_nowait()
                if unit is not None:
                    _settle(unit, AuditWriteError("the audit store closed before this was written"))

    async def _commit_next_group(self) -> bool:
        """Commit one group; False once the stop sentinel has been reached."""
        first = await self._queue.get()
        if first is None:
            return False
        group: list[Unit] = [first]
        size, more = _size(first), True
        while size < self._max and not self._queue.empty():
            unit = self._queue.get_nowait()
            if unit is None:
                more = False
                break
            group.append(unit)
            size += _size(unit)
        live = [u for u in group if u.future is not None and not u.future.cancelled()]
        if not live:
            return more
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._writer.write, live)
        except asyncio.CancelledError:
            for unit in live:
                _settle(unit, AuditWriteError("the writer was cancelled mid-transaction; "
                                              "verify the chain to see whether this was written"))
            raise
        except Exception as exc:
            results = [_as_write_error(exc)] * len(live)
        for unit, result in zip(live, results, strict=True):
            _settle(unit, result)
        return more


def _size(unit: Unit) -> int:
    return len(unit.events) if isinstance(unit, AppendUnit) else 1


def _settle(unit: Unit, result: object) -> None:
    future: asyncio.Future[Any] | None = unit.future
    if future is None or future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
