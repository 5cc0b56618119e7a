"""The write path: one transaction per group of appends, and the group commit that feeds it.

:class:`ChainWriter` is synchronous and runs on the store's single writer thread. Each call
takes the chain-head lock (PostgreSQL ``SELECT … FROM audit_head WHERE id = 1 FOR UPDATE``;
SQLite ``BEGIN IMMEDIATE``), numbers and hashes the events from the locked head, inserts them,
moves the head and commits. It holds one driver connection for its lifetime and speaks to it
directly: SQLAlchemy's per-transaction checkout, ``begin`` and ``commit`` cost more than the
SQLite transaction itself, and every pipeline call pays for one append.
After a failed transaction the connection is dropped and the next one opens a fresh one.
Because the lock lives in the database, writers in other processes queue on it too: one
linear chain, no gaps, no forks.

:class:`GroupCommitter` is the asyncio side. ``append`` puts the event and a future on a
queue and awaits the future. The writer thread takes *everything queued* (up to
``max_events``), runs it as one transaction, then resolves each future with its own records.
While a transaction runs, new appends pile up and ride the next one, so under load the cost
of a commit (an fsync) is shared by many callers without any timer or added latency. If a
group's transaction fails, its units are retried one transaction each, so one bad event
fails only its own caller.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, update

from ..errors import AuditWriteError
from .checkpoints import CheckpointSigner, append_anchor
from .engine import WRITE_OPTION
from .hashing import chain_hash, entry_bytes
from .models import (
    AuditEvent,
    AuditEventRow,
    AuditEventType,
    AuditRecord,
    Checkpoint,
)

__all__ = ["AppendUnit", "ChainWriter", "CheckpointUnit", "GroupCommitter"]

log = logging.getLogger(__name__)

_EVENTS = AuditEventRow.__table__  # type: ignore[attr-defined]


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
_BEGIN = {"sqlite": "BEGIN IMMEDIATE", "postgresql": None}  # psycopg opens one implicitly
_INSERT_CHECKPOINT = ("INSERT INTO audit_checkpoints (seq, head_hash, created_at, signature, "
                      "key_id) VALUES ({p}, {p}, {p}, {p}, {p})")


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
        self._dialect = engine.dialect.name
        self._signer = signer
        self._every = checkpoint_every
        self._anchor = anchor
        self._conn: Any = None  # the pool's proxy of one driver connection, held while open

    def close(self) -> None:
        """Return the held connection (call on the writer thread, after the last write)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

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
        if self._conn is None:
            self._conn = self._engine.raw_connection()  # SQLite: PRAGMAs set by the connect hook
        conn = self._conn
        cursor = conn.cursor()
        try:
            begin = _BEGIN[self._dialect]
            if begin:
                cursor.execute(begin)
            results = self._append(cursor, units, pending)
            conn.commit() if self._dialect == "postgresql" else cursor.execute("COMMIT")
            cursor.close()
        except BaseException:
            self._conn = None
            try:
                conn.rollback() if self._dialect == "postgresql" else cursor.execute("ROLLBACK")
                cursor.close()
            except Exception:  # the connection is unusable anyway: it is dropped just below
                pass
            conn.invalidate()  # a failed transaction may leave a broken session: never reuse it
            raise
        self._write_anchors(pending, units, results)
        return results

    def _append(self, cursor: Any, units: Sequence[Unit], pending: _Pending) -> list[object]:
        dialect = self._dialect
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
            results.append(self._checkpoint(cursor, unit.signer, seq, prev, unit.anchor, pending))
        self._flush(cursor, dialect, rows)
        if self._signer is not None and self._every and seq // self._every > start // self._every:
            self._checkpoint(cursor, self._signer, seq, prev, self._anchor, pending)
        if seq != start:
            cursor.execute(_MOVE_HEAD.format(p=_PARAMSTYLE[dialect]), (seq, prev))
        return results

    @staticmethod
    def _flush(cursor: Any, dialect: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert through the driver's executemany: the hot path of appends."""
        if rows:
            cursor.executemany(_INSERT.format(p=_PARAMSTYLE[dialect]), rows)
            rows.clear()

    def _checkpoint(self, cursor: Any, signer: CheckpointSigner, seq: int, head_hash: str,
                    anchor: Path | None, pending: _Pending) -> Checkpoint:
        checkpoint = signer.sign(seq, head_hash, datetime.now(UTC))
        created: Any = checkpoint.created_at
        if self._dialect == "sqlite":  # the text UTCDateTime writes: naive UTC, 6 digits
            created = created.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        cursor.execute(_INSERT_CHECKPOINT.format(p=_PARAMSTYLE[self._dialect]),
                       (checkpoint.seq, checkpoint.head_hash, created, checkpoint.signature,
                        checkpoint.key_id))
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
    """Coalesces concurrent appends into shared transactions on one executor thread.

    No asyncio task sits in the path: the first append of an idle store starts a drain on the
    writer thread; appends arriving while it writes join the queue and ride its next
    transaction; the thread hands each group's results back to the event loop in one
    ``call_soon_threadsafe``. That is two thread hand-offs per append and no extra event-loop
    task in between.
    """

    def __init__(self, writer: ChainWriter, executor: Executor, *, max_events: int = 5000) -> None:
        self._writer = writer
        self._executor = executor
        self._max = max_events
        self._queue: deque[Unit] = deque()
        self._lock = threading.Lock()  # guards _queue, _busy and _drain across the two threads
        self._busy = False
        self._drain: Future[None] | None = None
        self._open = False

    def start(self) -> None:
        self._open = True

    async def submit_append(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        future: asyncio.Future[list[AuditRecord]] = asyncio.get_running_loop().create_future()
        self._put(AppendUnit(events, future))
        return await future

    async def submit_checkpoint(self, signer: CheckpointSigner, anchor: Path | None) -> Checkpoint:
        future: asyncio.Future[Checkpoint] = asyncio.get_running_loop().create_future()
        self._put(CheckpointUnit(signer, anchor, future))
        return await future

    def _put(self, unit: Unit) -> None:
        with self._lock:
            if not self._open:
                raise AuditWriteError("the audit store is not open")
            self._queue.append(unit)
            if self._busy:
                return
            self._busy = True
        try:
            self._drain = self._executor.submit(self._drain_queue)
        except RuntimeError as exc:  # executor shut down under us
            with self._lock:
                self._busy = False
                self._queue.remove(unit)
            raise AuditWriteError("the audit store is closed") from exc

    async def close(self) -> None:
        """Stop taking appends, commit everything already queued, then return."""
        with self._lock:
            self._open = False
            drain = self._drain if self._busy else None
        if drain is not None:
            await asyncio.wrap_future(drain)

    def _drain_queue(self) -> None:
        """Writer thread: commit groups until the queue is empty."""
        while True:
            with self._lock:
                if not self._queue:
                    self._busy = False
                    return
                group = [self._queue.popleft()]
                size = _size(group[0])
                while self._queue and size < self._max:
                    group.append(self._queue.popleft())
                    size += _size(group[-1])
            live = [u for u in group if u.future is not None and not u.future.cancelled()]
            if not live:
                continue
            try:
                results = self._writer.write(live)
            except BaseException as exc:  # write() turns database errors into results already
                results = [_as_write_error(exc)] * len(live)
            _hand_back(live, results)


def _hand_back(units: Sequence[Unit], results: Sequence[object]) -> None:
    """Resolve the callers' futures on their event loop (from the writer thread)."""
    future = units[0].future
    assert future is not None
    try:
        future.get_loop().call_soon_threadsafe(_settle_all, units, results)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        log.warning("audit results of %d unit(s) dropped: event loop closed", len(units))


def _settle_all(units: Sequence[Unit], results: Sequence[object]) -> None:
    for unit, result in zip(units, results, strict=True):
        _settle(unit, result)


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
