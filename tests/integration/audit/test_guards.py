"""The database itself refuses UPDATE and DELETE, on any connection; redaction is the exception."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from typing import Any

import pytest

from compliance.audit import AuditEvent, AuditStore, CheckpointSigner, verify_chain
from compliance.audit.guards import GUARD_NAMES
from compliance.errors import AuditWriteError

from .conftest import Backend, conninfo

pytestmark = pytest.mark.integration


def db_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:  # pragma: no cover - only SQLite then
        pass
    return tuple(errors)


def refused(backend: Backend, statement: str, params: tuple[Any, ...] = (),
            match: str = "append-only") -> None:
    with pytest.raises(db_errors(), match=match):
        backend.sql(statement, params)


async def filled(backend: Backend, n: int = 5, **kwargs: Any) -> None:
    async with backend.store(**kwargs) as store:
        await store.append_many([AuditEvent("retrieval", "svc", {"i": i}) for i in range(n)])


async def test_events_cannot_be_updated_or_deleted(backend: Backend) -> None:
    await filled(backend)
    refused(backend, "UPDATE audit_events SET payload = '{}' WHERE seq = 2")
    refused(backend, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    refused(backend, "UPDATE audit_events SET payload = NULL, entry_hash = 'x' WHERE seq = 2")
    refused(backend, "UPDATE audit_events SET payload = NULL, seq = 9 WHERE seq = 5")
    refused(backend, "DELETE FROM audit_events WHERE seq = 5")
    refused(backend, "DELETE FROM audit_events")
    if backend.name == "postgresql":
        refused(backend, "TRUNCATE audit_events")
        refused(backend, "TRUNCATE audit_checkpoints, audit_head")
    async with backend.store() as store:
        report = await verify_chain(store)
    assert report.events_checked == 5


async def test_inserts_must_extend_the_chain(backend: Backend) -> None:
    await filled(backend)
    last = backend.sql("SELECT entry_hash, event_id FROM audit_events WHERE seq = 5")[0]
    second_id = backend.sql("SELECT event_id FROM audit_events WHERE seq = 2")[0][0]
    columns = ("seq, event_id, occurred_at, event_type, actor, payload, payload_digest, "
               "prev_hash, entry_hash")
    row = "(?, ?, '2024-01-01 00:00:00.000000', 'retrieval', 'x', ?, 'd', ?, 'h')"
    insert = f"INSERT INTO audit_events ({columns}) VALUES {row}"
    new_id = str(uuid.uuid4())
    refused(backend, insert, (7, new_id, "{}", last[0]), match="next sequence")
    refused(backend, insert, (6, new_id, "{}", "00" * 32), match="prev_hash")
    refused(backend, insert, (6, new_id, None, last[0]), match="NULL")
    if backend.name == "sqlite":  # REPLACE would delete the old row without a DELETE trigger
        replace = insert.replace("INSERT", "INSERT OR REPLACE")
        refused(backend, replace, (3, new_id, "{}", last[0]), match="next sequence")
        refused(backend, replace, (6, second_id, "{}", last[0]), match="event_id already")
        assert backend.sql("SELECT count(*) FROM audit_events")[0][0] == 5


async def test_checkpoints_and_head_are_guarded(backend: Backend, signer: CheckpointSigner) -> None:
    await filled(backend, signer=signer, checkpoint_every=5)
    assert backend.sql("SELECT count(*) FROM audit_checkpoints")[0][0] == 1
    refused(backend, "UPDATE audit_checkpoints SET head_hash = 'x'")
    refused(backend, "DELETE FROM audit_checkpoints")
    refused(backend, "INSERT INTO audit_checkpoints (seq, head_hash, created_at, signature, key_id)"
            " VALUES (3, 'not-the-hash', '2024-01-01 00:00:00', 's', 'k')",
            match="head_hash is not the chain hash")
    third = backend.sql("SELECT entry_hash FROM audit_events WHERE seq = 3")[0][0]
    refused(backend, "UPDATE audit_head SET seq = 3, entry_hash = ? WHERE id = 1", (third,),
            match="forward")
    refused(backend, "UPDATE audit_head SET entry_hash = 'x' WHERE id = 1", match="forward")
    refused(backend, "DELETE FROM audit_head", match="DELETE refused")
    refused(backend, "INSERT INTO audit_head (id, seq, entry_hash) VALUES (1, 0, 'x')",
            match="exactly one row")


async def test_redaction_is_the_one_allowed_update_and_the_chain_still_verifies(
        backend: Backend) -> None:
    async with backend.store() as store:
        records = await store.append_many(
            [AuditEvent("retrieval", "svc", {"email": f"u{i}@example.com"}) for i in range(6)])
        redacted = await store.redact_payload(3)
        assert redacted.redacted and redacted.payload is None
        assert redacted.payload_digest == records[2].payload_digest
        assert redacted.entry_hash == records[2].entry_hash
        assert (await store.redact_payload(3)).redacted  # idempotent
        backend.sql("UPDATE audit_events SET payload = NULL WHERE seq = 5")  # any connection
        got = await store.get(5)
        assert got is not None and got.redacted
        report = await verify_chain(store)
        assert report.events_checked == 6 and report.redacted_events == 2
        with pytest.raises(AuditWriteError, match="seq 99"):
            await store.redact_payload(99)


async def test_open_is_idempotent_and_create_false_only_checks(backend: Backend) -> None:
    with pytest.raises(AuditWriteError, match="not installed"):
        await backend.store(create=False).open()
    stores = [backend.store() for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))  # concurrent installs
    for store in stores:
        await store.close()
    await filled(backend)
    async with backend.store(create=False) as store:
        assert (await store.append(AuditEvent("rerank", "svc", {}))).seq == 6
    if backend.name == "sqlite":
        names = backend.sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        assert sorted(n for (n,) in names) == sorted(GUARD_NAMES["sqlite"])
        backend.sql("DROP TRIGGER audit_events_delete_guard")
    else:
        count = backend.sql("SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = "
                            "t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = ? AND NOT t.tgisinternal", (backend.schema,))
        assert count[0][0] == len(GUARD_NAMES["postgresql"])
        backend.sql("DROP TRIGGER audit_events_guard ON audit_events")
    with pytest.raises(AuditWriteError, match="audit_events_.*guard"):
        await backend.store(create=False).open()
    async with backend.store() as store:  # the owner reinstalls the missing guard
        assert (await verify_chain(store)).events_checked == 6


async def test_append_after_close_or_before_open_is_refused(backend: Backend) -> None:
    store = backend.store()
    with pytest.raises(AuditWriteError, match="not open"):
        await store.append(AuditEvent("rerank", "svc", {}))
    async with store:
        pass
    with pytest.raises(AuditWriteError, match="not open"):
        await store.append(AuditEvent("rerank", "svc", {}))


@pytest.mark.postgres
async def test_documented_postgres_roles(pg_backend: Backend) -> None:
    """The role set-up in compliance.audit's docstring: the app can append and read, not
    delete even with the triggers gone, and cannot drop the triggers."""
    role = f"audit_app_{uuid.uuid4().hex[:8]}"
    schema = pg_backend.schema
    await filled(pg_backend)  # installed by the owner (the test's superuser)
    pg_backend.sql(f"CREATE ROLE {role} LOGIN")
    try:
        for grant in (f"GRANT USAGE ON SCHEMA {schema} TO {role}",
                      f"GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO {role}",
                      f"GRANT SELECT, UPDATE ON audit_head TO {role}",
                      f"GRANT USAGE ON SEQUENCE audit_checkpoints_id_seq TO {role}"):
            pg_backend.sql(grant)
        url = pg_backend.url.replace("postgres@", f"{role}@", 1)
        app = Backend("postgresql", url, schema)
        signer = CheckpointSigner.generate()
        async with app.store(create=False, signer=signer) as store:
            await store.append(AuditEvent("retrieval", "app", {"x": 1}))
            await store.checkpoint()
            assert (await verify_chain(store, public_key=signer.public_key_hex)).last_seq == 6
        async with app.store(create=True):  # installed already: nothing to create
            pass
        import psycopg

        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.sql("DROP TRIGGER audit_events_guard ON audit_events")
        pg_backend.drop_guards()  # the owner (or an attacker holding its password)
        with pytest.raises(AuditWriteError, match="not installed"):
            await app.store(create=False).open()  # fail closed without the guards
        with pytest.raises(AuditWriteError):
            await app.store(create=True).open()  # and no right to put them back
        for statement in ("DELETE FROM audit_events", "UPDATE audit_events SET actor = 'x'",
                          "TRUNCATE audit_events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.sql(statement)
    finally:
        with psycopg_connect(pg_backend) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def psycopg_connect(backend: Backend) -> Any:
    import psycopg

    return psycopg.connect(conninfo(backend.url), autocommit=True)


async def test_store_refuses_bad_configuration(tmp_path: Any) -> None:
    from advanced_rag.errors import ConfigError

    with pytest.raises(ConfigError):
        AuditStore("sqlite:///:memory:")
    with pytest.raises(ConfigError):
        AuditStore("mysql://x/y")
    with pytest.raises(ConfigError):
        AuditStore(f"sqlite:///{tmp_path}/a.db", schema="audit")
    with pytest.raises(ConfigError):
        AuditStore(f"sqlite:///{tmp_path}/a.db", checkpoint_every=10)
    with pytest.raises(ConfigError):
        AuditStore(f"sqlite:///{tmp_path}/a.db", sqlite_synchronous="OFF; DROP")  # type: ignore[arg-type]
