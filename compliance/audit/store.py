"""AuditStore: the async, append-only, hash-chained audit log on SQLite or PostgreSQL.

SQL is blocking, so it runs off the event loop: writes on one dedicated writer thread (see
writer.py for the group commit), reads through :func:`asyncio.to_thread`.

SQLite runs in WAL mode (readers never block the writer, so verification and queries run
during appends) with ``synchronous=FULL`` by default: WAL is fsynced at every commit, so an
``await append(...)`` that returned survives a power cut, not only a process crash. NORMAL
would survive a crash of the process but could lose the last commits on power loss; group
commit already spreads one fsync over every event in the group, so FULL costs little where it
matters (throughput under load).

Example::

    async with AuditStore("sqlite:///./.advanced-rag/audit.db") as store:
        record = await store.append(AuditEvent(AuditEventType.RETRIEVAL, "svc-rag", {"k": 20}))
        report = await verify_chain(store)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from advanced_rag.errors import ConfigError

from ..errors import AuditWriteError
from .checkpoints import CheckpointSigner, append_anchor
from .engine import (
    SCHEMA_NAME,
    chain_sql,
    driver_rows,
    install,
    make_engine,
    python_entry,
    sqlite_entry_sql,
)
from .models import (
    AuditCheckpointRow,
    AuditEvent,
    AuditEventRow,
    AuditEventType,
    AuditHeadRow,
    AuditRecord,
    ChainHead,
    Checkpoint,
)
from .pruning import PrunePoint, prune_rows, read_prune_point
from .writer import ChainWriter, GroupCommitter

__all__ = ["DEFAULT_URL", "AuditStore", "ChainRow"]

DEFAULT_URL = "sqlite:///./.advanced-rag/audit.db"

ChainRow = Sequence[Any]
"""(seq, event_id, occurred_at, event_type, actor, tenant, request_id, parent_event_id,
payload, payload_digest, prev_hash, entry_hash) exactly as the driver returns them."""

_EVENTS = AuditEventRow.__table__  # type: ignore[attr-defined]
_CHECKPOINTS = AuditCheckpointRow.__table__  # type: ignore[attr-defined]
_HEAD = AuditHeadRow.__table__  # type: ignore[attr-defined]
_SQLITE_ENTRY_SQL = sqlite_entry_sql()


def _record(row: Any) -> AuditRecord:
    return AuditRecord(seq=row.seq, event_id=row.event_id, occurred_at=row.occurred_at,
                       event_type=AuditEventType(row.event_type), actor=row.actor,
                       tenant=row.tenant, request_id=row.request_id,
                       parent_event_id=row.parent_event_id, payload_json=row.payload,
                       payload_digest=row.payload_digest, prev_hash=row.prev_hash,
                       entry_hash=row.entry_hash)


class AuditStore:
    """Tamper-evident audit log: every event is chained by SHA-256 to the one before it.

    ``url`` is a SQLAlchemy URL: ``sqlite:///path.db`` (default ``./.advanced-rag/audit.db``,
    folder created) or ``postgresql+psycopg://user@host/db``. ``schema`` (PostgreSQL) puts
    the tables in that schema. ``create=False`` is for a runtime role without DDL rights:
    :meth:`open` then only checks that tables and append-only triggers exist, and refuses to
    run without them. ``checkpoint_every=N`` signs the head with ``signer`` whenever a commit
    crosses a multiple of N (and appends it to ``anchor`` when given).

    Example::

        signer = CheckpointSigner.from_env()
        async with AuditStore(url, signer=signer, checkpoint_every=10_000,
                              anchor="/mnt/worm/audit-anchor.jsonl") as store:
            await store.append(AuditEvent("retrieval", "svc-rag", {"k": 20}, tenant="acme"))
            recent = await store.query(event_type="access_denied", tenant="acme", limit=50)
    """

    def __init__(self, url: str = DEFAULT_URL, *, schema: str | None = None, create: bool = True,
                 signer: CheckpointSigner | None = None, checkpoint_every: int | None = None,
                 anchor: str | Path | None = None,
                 sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL",
                 max_group_events: int = 5000, busy_timeout_s: float = 30.0) -> None:
        self._url = make_url(url)
        backend = self._url.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ConfigError(f"unsupported audit database {backend!r}: use sqlite or postgresql",
                              key="audit.url")
        if backend == "sqlite" and self._url.database in (None, "", ":memory:"):
            raise ConfigError("the audit store needs a SQLite file, not an in-memory database",
                              key="audit.url")
        if schema is not None and (backend != "postgresql" or not SCHEMA_NAME.match(schema)):
            raise ConfigError(f"schema {schema!r}: a lowercase identifier, PostgreSQL only",
                              key="audit.schema")
        if sqlite_synchronous not in ("FULL", "NORMAL"):
            raise ConfigError(f"sqlite_synchronous {sqlite_synchronous!r}: FULL or NORMAL",
                              key="audit.sqlite_synchronous")
        if checkpoint_every is not None and (checkpoint_every < 1 or signer is None):
            raise ConfigError("checkpoint_every needs a signer and must be >= 1",
                              key="audit.checkpoint_every")
        self._schema, self._create, self._signer = schema, create, signer
        self._every = checkpoint_every
        self._anchor = Path(anchor) if anchor is not None else None
        self._sync, self._max_group, self._busy = sqlite_synchronous, max_group_events, busy_timeout_s
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._committer: GroupCommitter | None = None
        self._writer: ChainWriter | None = None
        self._sqlite_json = True

    def __repr__(self) -> str:
        return f"AuditStore({self._url.render_as_string(hide_password=True)!r})"

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._url.get_backend_name()

    @property
    def signer(self) -> CheckpointSigner | None:
        """The checkpoint signer given to the constructor (``None``: checkpoints and pruning
        need one passed in)."""
        return self._signer

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> AuditStore:
        """Connect, create tables and append-only triggers if missing (idempotent), start writing."""
        if self._committer is not None:
            return self
        engine = await asyncio.to_thread(make_engine, self._url, schema=self._schema,
                                         sqlite_synchronous=self._sync, busy_timeout_s=self._busy)
        try:
            missing = await asyncio.to_thread(install, engine, schema=self._schema,
                                              create=self._create)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise AuditWriteError(f"cannot open the audit store {self!r}: {exc}") from exc
        if missing:
            engine.dispose()
            raise AuditWriteError(f"audit store {self!r} is not installed (missing: "
                                  f"{', '.join(missing)}); open it once with create=True as the "
                                  "schema owner")
        self._engine = engine
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="audit-writer")
        self._writer = ChainWriter(engine, signer=self._signer, checkpoint_every=self._every,
                                   anchor=self._anchor)
        self._committer = GroupCommitter(self._writer, self._executor, max_events=self._max_group)
        self._committer.start()
        return self

    async def close(self) -> None:
        """Commit what is queued, stop the writer and release connections."""
        committer, self._committer = self._committer, None
        if committer is not None:
            await committer.close()
        if self._writer is not None and self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._writer.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    async def __aenter__(self) -> AuditStore:
        return await self.open()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- writes ----------------------------------------------------------------------------

    def _live(self) -> GroupCommitter:
        if self._committer is None:
            raise AuditWriteError("the audit store is not open: use 'async with AuditStore(...)'")
        return self._committer

    async def append(self, event: AuditEvent) -> AuditRecord:
        """Append one event; returns once it is committed, with its ``seq`` and hashes.

        Concurrent calls share transactions (group commit), each still returning only after
        its own event is committed. A caller cancelled while its event is being written may
        still find it committed (look it up by ``event.event_id``); the chain stays linear.
        """
        return (await self._live().submit_append((event,)))[0]

    async def append_many(self, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        """Append events as one contiguous run in one transaction: all are written or none."""
        if not events:
            return []
        return await self._live().submit_append(list(events))

    async def checkpoint(self, signer: CheckpointSigner | None = None, *,
                         anchor: str | Path | None = None) -> Checkpoint:
        """Sign the current head, store it in ``audit_checkpoints`` and, when an anchor file is
        given (here or to the constructor), append it there too (after the commit, fsynced)."""
        signer = signer or self._signer
        if signer is None:
            raise AuditWriteError("checkpoint needs a CheckpointSigner")
        path = Path(anchor) if anchor is not None else self._anchor
        return await self._live().submit_checkpoint(signer, path)

    async def redact_payload(self, seq: int) -> AuditRecord:
        """Erase the payload of ``seq`` (NULL); its digest and every hash stay, so the chain
        still verifies. The only mutation the database allows."""
        self._live()
        assert self._writer is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._writer.redact, seq)
        except SQLAlchemyError as exc:
            raise AuditWriteError(f"redaction of seq {seq} failed: {exc}") from exc
        record = await self.get(seq)
        if record is None:
            raise AuditWriteError(f"no audit event with seq {seq}")
        return record

    async def prune(self, through_seq: int, signer: CheckpointSigner | None = None, *,
                    anchor: str | Path | None = None) -> PrunePoint:
        """Delete every event up to ``through_seq`` after signing the chain's hash there as the
        new prune point, in one transaction; verification then starts from it (see
        pruning.py). Needs a signer (here or to the constructor); the head always stays. The
        prune point is appended to the anchor file (here or the constructor's) after commit."""
        signer = signer or self._signer
        if signer is None:
            raise AuditWriteError("pruning audit events needs a checkpoint signing key (the "
                                  "prune point is signed); without one, redact payloads instead")
        self._live()
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            point = await loop.run_in_executor(self._executor, prune_rows, self._open_engine(),
                                               through_seq, signer)
        except SQLAlchemyError as exc:
            raise AuditWriteError(f"pruning through seq {through_seq} failed, nothing was "
                                  f"deleted: {exc}") from exc
        path = Path(anchor) if anchor is not None else self._anchor
        if path is not None:
            try:
                await asyncio.to_thread(append_anchor, path, point.checkpoint,
                                        signer.public_key_hex)
            except OSError as exc:
                raise AuditWriteError(f"prune point at seq {through_seq} is committed but the "
                                      f"anchor line could not be written to {path}: {exc}") \
                    from exc
        return point

    # -- reads -----------------------------------------------------------------------------

    async def prune_point(self) -> PrunePoint | None:
        """The newest prune point (events up to its ``through_seq`` are gone), or ``None``."""
        return await asyncio.to_thread(read_prune_point, self._open_engine())

    async def _read(self, statement: Any, params: dict[str, Any] | None = None) -> list[Any]:
        engine = self._open_engine()

        def run() -> list[Any]:
            with engine.connect() as conn:
                return list(conn.execute(statement, params or {}).all())

        return await asyncio.to_thread(run)

    async def head(self) -> ChainHead:
        """The chain head as recorded in ``audit_head`` (``seq`` 0 and GENESIS when empty)."""
        rows = await self._read(select(_HEAD.c.seq, _HEAD.c.entry_hash).where(_HEAD.c.id == 1))
        return ChainHead(int(rows[0][0]), str(rows[0][1])) if rows else ChainHead()

    async def max_seq(self) -> int:
        """Highest ``seq`` present in ``audit_events`` (0 when empty)."""
        rows = await self._read(select(func.coalesce(func.max(_EVENTS.c.seq), 0)))
        return int(rows[0][0])

    async def get(self, seq: int) -> AuditRecord | None:
        rows = await self._read(select(_EVENTS).where(_EVENTS.c.seq == seq))
        return _record(rows[0]) if rows else None

    async def iter_records(self, start: int | None = None, end: int | None = None,
                           batch: int = 5000) -> AsyncIterator[AuditRecord]:
        """Stream records in ``seq`` order, ``start``..``end`` inclusive, ``batch`` rows per query."""
        after = (start or 1) - 1
        while True:
            stmt = select(_EVENTS).where(_EVENTS.c.seq > after)
            if end is not None:
                stmt = stmt.where(_EVENTS.c.seq <= end)
            rows = await self._read(stmt.order_by(_EVENTS.c.seq).limit(batch))
            for row in rows:
                yield _record(row)
            if len(rows) < batch:
                return
            after = rows[-1].seq

    async def check_writable(self) -> str:
        """Prove, without writing an event, that a new event could be committed now: on SQLite
        take the write lock (``BEGIN IMMEDIATE``, then roll back); on PostgreSQL check the
        server is not a read-only standby and the role may INSERT into ``audit_events``.
        Raises :class:`AuditWriteError` with the reason otherwise (health checks)."""
        engine = self._open_engine()
        dialect = self.dialect

        def run() -> str:
            raw = engine.raw_connection()
            try:
                cursor = raw.cursor()
                if dialect == "sqlite":
                    cursor.execute("BEGIN IMMEDIATE")
                    cursor.execute("ROLLBACK")
                    return "write lock taken and released"
                cursor.execute("SELECT pg_is_in_recovery(), "
                               "has_table_privilege(current_user, 'audit_events', 'INSERT')")
                row = cursor.fetchone()
                standby, may_insert = (True, False) if row is None else row
                raw.rollback()
                if standby:
                    raise AuditWriteError("the PostgreSQL server is a read-only standby")
                if not may_insert:
                    raise AuditWriteError("the database role may not INSERT into audit_events")
                return "primary server, INSERT granted"
            finally:
                raw.close()

        try:
            return await asyncio.to_thread(run)
        except AuditWriteError:
            raise
        except Exception as exc:  # driver errors: locked, read-only file, connection refused
            raise AuditWriteError(f"audit store {self!r} is not writable: {exc}") from exc

    def _open_engine(self) -> Engine:
        if self._engine is None:
            raise AuditWriteError("the audit store is not open")
        return self._engine

    async def chain_rows(self, *, after: int, end: int, limit: int) -> list[ChainRow]:
        """Raw rows ``after < seq <= end`` for verification (``occurred_at`` as the driver
        returns it: text on SQLite, a datetime on PostgreSQL). Most callers want iter_records."""
        return await asyncio.to_thread(driver_rows, self._open_engine(), chain_sql(self.dialect),
                                       (after, end, limit))

    async def entry_rows(self, *, after: int, end: int, limit: int) -> list[Sequence[Any]]:
        """Rows ``after < seq <= end`` as (seq, payload bytes, payload_digest, prev_hash,
        entry_hash, encoded entry bytes or None): what fast verification hashes."""
        engine = self._open_engine()
        if self.dialect == "sqlite" and self._sqlite_json:
            try:
                return await asyncio.to_thread(driver_rows, engine, _SQLITE_ENTRY_SQL,
                                               (after, end, limit))
            except Exception as exc:  # SQLite built without JSON functions: build in Python
                if "json_quote" not in str(exc):
                    raise
                self._sqlite_json = False
        rows = await self.chain_rows(after=after, end=end, limit=limit)
        return await asyncio.to_thread(lambda: [python_entry(row) for row in rows])

    async def query(self, *, event_type: AuditEventType | str | None = None,
                    start_time: datetime | None = None, end_time: datetime | None = None,
                    tenant: str | None = None, actor: str | None = None, limit: int = 100,
                    descending: bool = False) -> list[AuditRecord]:
        """Records matching every given filter, in ``seq`` order (newest first if
        ``descending``); ``start_time`` inclusive, ``end_time`` exclusive, on ``occurred_at``."""
        stmt = select(_EVENTS)
        if event_type is not None:
            stmt = stmt.where(_EVENTS.c.event_type == AuditEventType(event_type).value)
        if start_time is not None:
            stmt = stmt.where(_EVENTS.c.occurred_at >= start_time)
        if end_time is not None:
            stmt = stmt.where(_EVENTS.c.occurred_at < end_time)
        if tenant is not None:
            stmt = stmt.where(_EVENTS.c.tenant == tenant)
        if actor is not None:
            stmt = stmt.where(_EVENTS.c.actor == actor)
        order = _EVENTS.c.seq.desc() if descending else _EVENTS.c.seq
        return [_record(row) for row in await self._read(stmt.order_by(order).limit(limit))]

    async def checkpoints(self, *, start: int | None = None,
                          end: int | None = None) -> list[Checkpoint]:
        """Stored checkpoints with ``start <= seq <= end``, in ``seq`` order."""
        stmt = select(_CHECKPOINTS)
        if start is not None:
            stmt = stmt.where(_CHECKPOINTS.c.seq >= start)
        if end is not None:
            stmt = stmt.where(_CHECKPOINTS.c.seq <= end)
        rows = await self._read(stmt.order_by(_CHECKPOINTS.c.seq, _CHECKPOINTS.c.id))
        return [Checkpoint(seq=r.seq, head_hash=r.head_hash, created_at=r.created_at,
                           signature=r.signature, key_id=r.key_id) for r in rows]
