"""Append-only guards the *database* enforces: SQLite triggers, PostgreSQL trigger functions.

What they allow, on every connection (the library's or anyone's):

* ``audit_events``: INSERT only of the next ``seq`` whose ``prev_hash`` is the current last
  ``entry_hash`` (``GENESIS`` for seq 1), with a payload and a fresh ``event_id``; the single
  UPDATE that sets ``payload`` to NULL and leaves every other column as it was (redaction);
  DELETE only of rows at or before the newest prune point in ``audit_prunes`` (retention
  pruning, see pruning.py); no TRUNCATE on PostgreSQL.
* ``audit_checkpoints``: INSERT of a checkpoint whose ``head_hash`` is the chain's hash at its
  ``seq``; no UPDATE, no DELETE.
* ``audit_prunes``: INSERT of a prune point past the previous one, before the head, whose
  ``entry_hash`` is the chain's hash at its ``through_seq``; no UPDATE, no DELETE. The database
  cannot check its Ed25519 signature: verification does (verify.py).
* ``audit_head``: one row ``id = 1``; UPDATE only forward, to the real last entry; no DELETE.

SQLite note: ``INSERT OR REPLACE`` deletes the conflicting row *without* firing DELETE triggers,
so the INSERT triggers refuse any row that would conflict, before REPLACE can act.

These guards stop mistakes and ordinary credentials. Someone who can drop the triggers (the
table owner, a file-level attacker) can still rewrite rows: hashes, signed checkpoints and the
anchor file are what detect that (see verify.py).
"""

from __future__ import annotations

import re

from sqlalchemy import Connection, text

from .hashing import GENESIS

__all__ = ["GUARD_NAMES", "install_guards", "missing_guards"]

_EVENT_COLUMNS = ("seq", "event_id", "occurred_at", "event_type", "actor", "tenant", "request_id",
                  "parent_event_id", "payload_digest", "prev_hash", "entry_hash")

_SQLITE_UNCHANGED = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in _EVENT_COLUMNS)

_SQLITE: dict[str, str] = {
    # One statement with CASE: each extra trigger statement costs a VDBE program run per row.
    "audit_events_insert_guard": f"""
CREATE TRIGGER IF NOT EXISTS audit_events_insert_guard BEFORE INSERT ON audit_events
BEGIN
  SELECT CASE
    WHEN NEW.payload IS NULL THEN
      RAISE(ABORT, 'audit_events is append-only: payload must not be NULL on insert')
    WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM audit_events) THEN
      RAISE(ABORT, 'audit_events is append-only: seq must be the next sequence number')
    WHEN NEW.prev_hash IS NOT COALESCE(
        (SELECT entry_hash FROM audit_events WHERE seq = NEW.seq - 1), '{GENESIS}') THEN
      RAISE(ABORT, 'audit_events is append-only: prev_hash must be the last entry_hash')
    WHEN EXISTS (SELECT 1 FROM audit_events WHERE event_id = NEW.event_id) THEN
      RAISE(ABORT, 'audit_events is append-only: event_id already present')
  END;
END""",
    "audit_events_update_guard": f"""
CREATE TRIGGER IF NOT EXISTS audit_events_update_guard BEFORE UPDATE ON audit_events
WHEN NOT (NEW.payload IS NULL AND {_SQLITE_UNCHANGED})
BEGIN
  SELECT RAISE(ABORT, 'audit_events is append-only: the only update allowed sets payload to NULL');
END""",
    "audit_events_delete_guard": """
CREATE TRIGGER IF NOT EXISTS audit_events_delete_guard BEFORE DELETE ON audit_events
WHEN OLD.seq > (SELECT COALESCE(MAX(through_seq), 0) FROM audit_prunes)
BEGIN
  SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused past the last signed prune point');
END""",
    "audit_prunes_insert_guard": """
CREATE TRIGGER IF NOT EXISTS audit_prunes_insert_guard BEFORE INSERT ON audit_prunes
BEGIN
  SELECT CASE
    WHEN EXISTS (SELECT 1 FROM audit_prunes WHERE id = NEW.id) THEN
      RAISE(ABORT, 'audit_prunes is append-only: id already present')
    WHEN NEW.through_seq <= (SELECT COALESCE(MAX(through_seq), 0) FROM audit_prunes) THEN
      RAISE(ABORT, 'audit_prunes: a prune point may only move forward')
    WHEN NEW.through_seq >= (SELECT seq FROM audit_head WHERE id = 1) THEN
      RAISE(ABORT, 'audit_prunes: the chain head cannot be pruned')
    WHEN NEW.entry_hash IS NOT (SELECT entry_hash FROM audit_events WHERE seq = NEW.through_seq) THEN
      RAISE(ABORT, 'audit_prunes: entry_hash is not the chain hash at through_seq')
  END;
END""",
    "audit_prunes_update_guard": """
CREATE TRIGGER IF NOT EXISTS audit_prunes_update_guard BEFORE UPDATE ON audit_prunes
BEGIN
  SELECT RAISE(ABORT, 'audit_prunes is append-only: UPDATE refused');
END""",
    "audit_prunes_delete_guard": """
CREATE TRIGGER IF NOT EXISTS audit_prunes_delete_guard BEFORE DELETE ON audit_prunes
BEGIN
  SELECT RAISE(ABORT, 'audit_prunes is append-only: DELETE refused');
END""",
    "audit_checkpoints_insert_guard": """
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_insert_guard BEFORE INSERT ON audit_checkpoints
BEGIN
  SELECT RAISE(ABORT, 'audit_checkpoints is append-only: id already present')
   WHERE EXISTS (SELECT 1 FROM audit_checkpoints WHERE id = NEW.id);
  SELECT RAISE(ABORT, 'audit_checkpoints: head_hash is not the chain hash at seq')
   WHERE NEW.head_hash IS NOT (SELECT entry_hash FROM audit_events WHERE seq = NEW.seq);
END""",
    "audit_checkpoints_update_guard": """
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_update_guard BEFORE UPDATE ON audit_checkpoints
BEGIN
  SELECT RAISE(ABORT, 'audit_checkpoints is append-only: UPDATE refused');
END""",
    "audit_checkpoints_delete_guard": """
CREATE TRIGGER IF NOT EXISTS audit_checkpoints_delete_guard BEFORE DELETE ON audit_checkpoints
BEGIN
  SELECT RAISE(ABORT, 'audit_checkpoints is append-only: DELETE refused');
END""",
    "audit_head_insert_guard": """
CREATE TRIGGER IF NOT EXISTS audit_head_insert_guard BEFORE INSERT ON audit_head
BEGIN
  SELECT RAISE(ABORT, 'audit_head holds exactly one row')
   WHERE NEW.id IS NOT 1 OR EXISTS (SELECT 1 FROM audit_head);
END""",
    "audit_head_update_guard": f"""
CREATE TRIGGER IF NOT EXISTS audit_head_update_guard BEFORE UPDATE ON audit_head
WHEN NOT (NEW.id IS 1 AND NEW.seq >= OLD.seq
          AND NEW.entry_hash IS COALESCE(
            (SELECT entry_hash FROM audit_events WHERE seq = NEW.seq),
            CASE WHEN NEW.seq = 0 THEN '{GENESIS}' END)
          AND NOT EXISTS (SELECT 1 FROM audit_events WHERE seq = NEW.seq + 1))
BEGIN
  SELECT RAISE(ABORT, 'audit_head may only move forward to the last entry');
END""",
    "audit_head_delete_guard": """
CREATE TRIGGER IF NOT EXISTS audit_head_delete_guard BEFORE DELETE ON audit_head
BEGIN
  SELECT RAISE(ABORT, 'audit_head: DELETE refused');
END""",
}


def _pg_functions(s: str) -> list[str]:
    """Trigger functions with schema-qualified names (``s`` is an already quoted identifier)."""
    new_cols = ", ".join(f"NEW.{c}" for c in _EVENT_COLUMNS)
    old_cols = ", ".join(f"OLD.{c}" for c in _EVENT_COLUMNS)
    return [
        f"""
CREATE OR REPLACE FUNCTION {s}.audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.payload IS NULL THEN
      RAISE EXCEPTION 'audit_events is append-only: payload must not be NULL on insert';
    END IF;
    IF NEW.seq IS DISTINCT FROM (SELECT COALESCE(MAX(seq), 0) + 1 FROM {s}.audit_events) THEN
      RAISE EXCEPTION 'audit_events is append-only: seq must be the next sequence number';
    END IF;
    IF NEW.prev_hash IS DISTINCT FROM COALESCE(
        (SELECT entry_hash FROM {s}.audit_events WHERE seq = NEW.seq - 1), '{GENESIS}') THEN
      RAISE EXCEPTION 'audit_events is append-only: prev_hash must be the last entry_hash';
    END IF;
    RETURN NEW;
  ELSIF TG_OP = 'UPDATE' THEN
    IF NEW.payload IS NULL AND ROW({new_cols}) IS NOT DISTINCT FROM ROW({old_cols}) THEN
      RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: the only update allowed sets payload to NULL';
  ELSIF TG_OP = 'DELETE' THEN
    IF OLD.seq <= (SELECT COALESCE(MAX(through_seq), 0) FROM {s}.audit_prunes) THEN
      RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: DELETE refused past the last signed prune point';
  END IF;
  RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
END $fn$""",
        f"""
CREATE OR REPLACE FUNCTION {s}.audit_prunes_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.through_seq <= (SELECT COALESCE(MAX(through_seq), 0) FROM {s}.audit_prunes) THEN
      RAISE EXCEPTION 'audit_prunes: a prune point may only move forward';
    END IF;
    IF NEW.through_seq >= (SELECT seq FROM {s}.audit_head WHERE id = 1) THEN
      RAISE EXCEPTION 'audit_prunes: the chain head cannot be pruned';
    END IF;
    IF NEW.entry_hash IS DISTINCT FROM
        (SELECT entry_hash FROM {s}.audit_events WHERE seq = NEW.through_seq) THEN
      RAISE EXCEPTION 'audit_prunes: entry_hash is not the chain hash at through_seq';
    END IF;
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_prunes is append-only: % refused', TG_OP;
END $fn$""",
        f"""
CREATE OR REPLACE FUNCTION {s}.audit_checkpoints_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.head_hash IS DISTINCT FROM
        (SELECT entry_hash FROM {s}.audit_events WHERE seq = NEW.seq) THEN
      RAISE EXCEPTION 'audit_checkpoints: head_hash is not the chain hash at seq';
    END IF;
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_checkpoints is append-only: % refused', TG_OP;
END $fn$""",
        f"""
CREATE OR REPLACE FUNCTION {s}.audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.id IS DISTINCT FROM 1 OR EXISTS (SELECT 1 FROM {s}.audit_head) THEN
      RAISE EXCEPTION 'audit_head holds exactly one row';
    END IF;
    RETURN NEW;
  ELSIF TG_OP = 'UPDATE' THEN
    IF NEW.id = 1 AND NEW.seq >= OLD.seq
       AND NEW.entry_hash IS NOT DISTINCT FROM COALESCE(
         (SELECT entry_hash FROM {s}.audit_events WHERE seq = NEW.seq),
         CASE WHEN NEW.seq = 0 THEN '{GENESIS}' END)
       AND NOT EXISTS (SELECT 1 FROM {s}.audit_events WHERE seq = NEW.seq + 1) THEN
      RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_head may only move forward to the last entry';
  END IF;
  RAISE EXCEPTION 'audit_head: % refused', TG_OP;
END $fn$""",
    ]


def _pg_triggers(s: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for table in ("audit_events", "audit_checkpoints", "audit_head", "audit_prunes"):
        out[f"{table}_guard"] = (f"CREATE TRIGGER {table}_guard BEFORE INSERT OR UPDATE OR DELETE "
                                 f"ON {s}.{table} FOR EACH ROW EXECUTE FUNCTION {s}.{table}_guard()")
        out[f"{table}_no_truncate"] = (f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON "
                                       f"{s}.{table} FOR EACH STATEMENT "
                                       f"EXECUTE FUNCTION {s}.{table}_guard()")
    return out


GUARD_NAMES: dict[str, frozenset[str]] = {
    "sqlite": frozenset(_SQLITE),
    "postgresql": frozenset(_pg_triggers("s")),
}
"""Trigger names each dialect must have for the store to open."""


def _existing(conn: Connection, schema: str) -> set[str]:
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    else:
        rows = conn.execute(text(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND NOT t.tgisinternal"), {"schema": schema})
    return {str(row[0]) for row in rows}


_SPACE = re.compile(r"\s+")


def _normal(sql: str) -> str:
    return _SPACE.sub(" ", sql).strip()


def _outdated(conn: Connection, schema: str) -> set[str]:
    """Guards that exist in an older definition (the DELETE guard from before pruning, say):
    SQLite triggers whose stored SQL differs, PostgreSQL triggers whose function body does."""
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
        stored = {str(name): _normal(str(sql)) for name, sql in rows}
        return {name for name, ddl in _SQLITE.items()
                if name in stored and stored[name] != _normal(ddl.replace(" IF NOT EXISTS", "", 1))}
    quoted = conn.dialect.identifier_preparer.quote_identifier(schema)
    wanted: dict[str, str] = {}
    for ddl in _pg_functions(quoted):  # "... FUNCTION <schema>.<name>() ... $fn$<body>$fn$"
        name = ddl.split("FUNCTION ", 1)[1].split("(", 1)[0].rsplit(".", 1)[1]
        wanted[name] = ddl.split("$fn$")[1]
    rows = conn.execute(text(
        "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = :schema"), {"schema": schema})
    stale = {str(name) for name, body in rows if name in wanted and body != wanted[name]}
    return {trigger for trigger in GUARD_NAMES["postgresql"]
            if trigger.removesuffix("_no_truncate").removesuffix("_guard") + "_guard" in stale}


def missing_guards(conn: Connection, schema: str) -> list[str]:
    """Names of the guard triggers that do not exist, or exist in an outdated definition
    (``schema`` is ignored on SQLite)."""
    wanted = GUARD_NAMES.get(conn.dialect.name)
    if wanted is None:
        raise ValueError(f"no append-only guards for dialect {conn.dialect.name!r}")
    return sorted((wanted - _existing(conn, schema)) | _outdated(conn, schema))


def install_guards(conn: Connection, schema: str) -> None:
    """Create the missing guards and replace outdated ones, inside the caller's transaction
    (idempotent)."""
    missing = set(missing_guards(conn, schema))
    if not missing:
        return
    # no_parameters: the DDL holds plpgsql's ``%`` placeholders, not DB-API ones
    raw = {"no_parameters": True}
    if conn.dialect.name == "sqlite":
        for name in sorted(missing):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}", execution_options=raw)
            conn.exec_driver_sql(_SQLITE[name], execution_options=raw)
        return
    quoted = conn.dialect.identifier_preparer.quote_identifier(schema)
    for ddl in _pg_functions(quoted):  # CREATE OR REPLACE: outdated bodies are replaced too
        conn.exec_driver_sql(ddl, execution_options=raw)
    existing = _existing(conn, schema)
    for name, ddl in _pg_triggers(quoted).items():
        if name not in existing:
            conn.exec_driver_sql(ddl, execution_options=raw)
