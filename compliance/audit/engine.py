"""Database plumbing for the audit store: engines, idempotent installation, raw reads.

* SQLite connections run in WAL mode with the chosen ``synchronous`` level and a busy
  timeout; pysqlite's implicit transactions are switched off and a ``begin`` hook issues
  ``BEGIN`` or, for writes, ``BEGIN IMMEDIATE`` (the write lock up front: the head read and
  the inserts of one append cannot interleave with another writer, in this process or another,
  and there is no deadlock-prone read-to-write upgrade).
* PostgreSQL connections get ``search_path`` set to the store's schema.
* :func:`install` creates what is missing (schema, tables, guards, the head row) under a
  lock (``pg_advisory_xact_lock`` / ``BEGIN IMMEDIATE``) so concurrent first opens are safe,
  then reports anything still missing; it never alters what exists.
* Verification reads rows through the driver's own cursor: plain tuples, no ORM layer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, make_url

from advanced_rag.errors import MissingDependencyError

from .guards import install_guards, missing_guards
from .hashing import ENTRY_VERSION, GENESIS, encode_entry, occurred_text
from .models import AuditCheckpointRow, AuditEventRow, AuditHeadRow, AuditPruneRow

__all__ = ["SCHEMA_NAME", "WRITE_OPTION", "chain_sql", "driver_rows", "engine_with_tables",
           "install", "install_on", "make_engine",
           "python_entry", "sqlite_entry_sql"]

WRITE_OPTION = "audit_write"
"""Execution option that makes the SQLite ``begin`` hook issue ``BEGIN IMMEDIATE``."""

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_TABLES = [AuditEventRow.__table__, AuditCheckpointRow.__table__,  # type: ignore[attr-defined]
           AuditHeadRow.__table__, AuditPruneRow.__table__]  # type: ignore[attr-defined]
_HEAD = AuditHeadRow.__table__  # type: ignore[attr-defined]
_INSTALL_LOCK = 0x6164_7261_6761_7564  # pg_advisory_xact_lock key shared by every open()
_PARAMSTYLE = {"sqlite": "?", "postgresql": "%s"}
_CHAIN_SQL = ("SELECT seq, event_id, occurred_at, event_type, actor, tenant, request_id, "
              "parent_event_id, payload, payload_digest, prev_hash, entry_hash FROM audit_events "
              "WHERE seq > {p} AND seq <= {p} ORDER BY seq LIMIT {p}")


def make_engine(url: URL, *, schema: str | None, sqlite_synchronous: str,
                busy_timeout_s: float) -> Engine:
    """An engine with the audit store's session settings (creates a SQLite file's folder)."""
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s,
                                                  "check_same_thread": False})

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # BEGIN comes from the hook below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cursor.close()

        event.listen(engine, "connect", on_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    args: dict[str, Any] = {}
    if schema is not None:
        args["options"] = f"-c search_path={schema}"
    try:
        return create_engine(url, connect_args=args, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise MissingDependencyError("psycopg", "postgres") from exc


def engine_with_tables(url: str, tables: Sequence[Table], *, schema: str | None,
                       sqlite_synchronous: str = "FULL") -> Engine:
    """An engine on the audit database with ``tables`` created if missing (holds, lineage,
    keys: the side tables that live next to the chain)."""
    engine = make_engine(make_url(url), schema=schema, sqlite_synchronous=sqlite_synchronous,
                         busy_timeout_s=30.0)
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        MetaData().create_all(conn, tables=list(tables))
    return engine


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION)
                         else "BEGIN")


def install(engine: Engine, *, schema: str | None, create: bool) -> list[str]:
    """Create whatever is missing when ``create``; return what is still missing."""
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        return install_on(conn, schema=schema, create=create)


def install_on(conn: Connection, *, schema: str | None, create: bool) -> list[str]:
    """:func:`install` inside the caller's transaction (the schema migrations use it)."""
    found = _prepare_schema(conn, schema, create)
    if create and found is not None:
        AuditEventRow.metadata.create_all(conn, tables=_TABLES)
        install_guards(conn, found)
        if conn.execute(select(_HEAD.c.id)).first() is None:
            conn.execute(_HEAD.insert().values(id=1, seq=0, entry_hash=GENESIS))
    return _missing(conn, found)


def _prepare_schema(conn: Connection, schema: str | None, create: bool) -> str | None:
    if conn.dialect.name == "sqlite":
        return "main"
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _INSTALL_LOCK})
    if schema is not None and create:
        exists = conn.scalar(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema})
        if exists is None:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')  # validated by SCHEMA_NAME
    found = conn.scalar(text("SELECT current_schema()"))
    return None if found is None else str(found)


def _missing(conn: Connection, schema: str | None) -> list[str]:
    if schema is None:
        return ["schema"]
    tables = set(inspect(conn).get_table_names(schema=schema))
    missing = [t.name for t in _TABLES if t.name not in tables]
    if missing:
        return missing
    missing = missing_guards(conn, schema)
    if conn.execute(select(_HEAD.c.id).where(_HEAD.c.id == 1)).first() is None:
        missing.append("audit_head row")
    return missing


def driver_rows(engine: Engine, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
    """Rows of one query through the driver's own cursor: plain tuples, about a quarter cheaper
    per row than SQLAlchemy's Row layer (verification reads every row of the chain)."""
    with engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()  # type: ignore[no-any-return]
        finally:
            cursor.close()


def chain_sql(dialect: str) -> str:
    """Raw rows ``after < seq <= end`` (params: after, end, limit), in the driver's paramstyle."""
    return _CHAIN_SQL.format(p=_PARAMSTYLE[dialect])


def sqlite_entry_sql() -> str:
    """Rows as (seq, payload bytes, digest, prev_hash, entry_hash, entry bytes), the entry built
    by SQLite: ``json_quote`` escapes exactly like ``encode_entry`` (a property test compares
    them), and the string work runs inside ``sqlite3_step``, which releases the GIL, so it
    overlaps with hashing in the verifying thread. A row whose SQL-built entry does not verify
    is re-checked from its raw fields in Python, so escaping alone can never decide a row."""
    fields = [("actor", "json_quote(actor)"), ("event_id", "json_quote(event_id)"),
              ("event_type", "json_quote(event_type)"),
              # only the exact stored form; anything else gives NULL -> re-checked in Python
              ("occurred_at", "CASE WHEN length(occurred_at) = 26 AND substr(occurred_at, 11, 1)"
                              " = ' ' AND substr(occurred_at, 20, 1) = '.' THEN json_quote("
                              "substr(occurred_at, 1, 10) || 'T' || substr(occurred_at, 12) || "
                              "'Z') END"),
              ("parent_event_id", "json_quote(parent_event_id)"),
              ("payload_digest", "json_quote(payload_digest)"),
              ("request_id", "json_quote(request_id)"), ("seq", "seq"),
              ("tenant", "json_quote(tenant)")]
    parts = []
    for i, (name, expr) in enumerate(fields):
        parts += [f"""'{"{" if i == 0 else ","}"{name}":'""", expr]
    parts.append(f"""',"v":{ENTRY_VERSION}}}'""")
    return ("SELECT seq, CAST(payload AS BLOB), payload_digest, prev_hash, entry_hash, CAST("
            + " || ".join(parts) + " AS BLOB) FROM audit_events "
            "WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?")


def python_entry(row: Sequence[Any]) -> tuple[Any, ...]:
    """The shape of :func:`sqlite_entry_sql` built from a raw row (PostgreSQL, SQLite without
    JSON functions); an unreadable field gives ``None`` for the entry."""
    (seq, event_id, occurred, event_type, actor, tenant, request_id, parent, payload, digest,
     prev_hash, entry_hash) = row
    try:
        entry: bytes | None = encode_entry(
            seq=seq, event_id=event_id, occurred_at=occurred_text(occurred), event_type=event_type,
            actor=actor, tenant=tenant, request_id=request_id, parent_event_id=parent,
            payload_digest=digest)
    except (TypeError, ValueError):
        entry = None  # verification re-checks this row field by field and names the problem
    return (seq, None if payload is None else payload.encode("utf-8"), digest, prev_hash,
            entry_hash, entry)
