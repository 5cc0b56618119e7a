"""Schema migrations (Alembic) on SQLite and PostgreSQL: the baseline installs everything the
library keeps in SQL, is idempotent, adopts a database created before migrations existed, and
leaves a schema a runtime role (audit.create: false) can open."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from advanced_rag.config import validate_config
from compliance.audit.store import AuditStore
from compliance.migrations import current, history, upgrade

from .conftest import Backend

pytestmark = pytest.mark.integration
TABLES = {"audit_events", "audit_checkpoints", "audit_head", "audit_prunes", "query_log",
          "drift_corpus_sample", "drift_reference", "drift_report", "legal_holds",
          "document_versions", "subject_keys", "scheduler_lock", "advanced_rag_schema_version"}


def settings(backend: Backend, tmp_path: Path) -> dict[str, object]:
    audit: dict[str, object] = {"url": backend.url}
    if backend.schema:
        audit["schema"] = backend.schema
    return {"data_dir": str(tmp_path), "audit": audit}


def tables(backend: Backend) -> set[str]:
    if backend.name == "sqlite":
        rows = backend.sql("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = backend.sql("SELECT table_name FROM information_schema.tables "
                           "WHERE table_schema = ?", (backend.schema,))
    return {r[0] for r in rows}


async def test_baseline_installs_everything_once(backend: Backend, tmp_path: Path) -> None:
    config = validate_config(settings(backend, tmp_path))
    assert await asyncio.to_thread(current, config) is None
    assert await asyncio.to_thread(upgrade, config) == "0001"
    assert TABLES <= tables(backend)
    assert await asyncio.to_thread(upgrade, config) == "0001"  # nothing left to do
    assert await asyncio.to_thread(current, config) == "0001"
    async with backend.store(create=False) as store:  # guards and head row are in place
        assert (await store.head()).seq == 0
    assert [r for r, _, _ in history()] == ["0001"]


async def test_a_database_created_before_migrations_is_adopted(backend: Backend,
                                                               tmp_path: Path) -> None:
    from compliance.audit.models import AuditEvent

    async with backend.store() as store:  # what a pre-migration release did on first open
        await store.append(AuditEvent("retrieval", "svc", {"k": 1}))
    config = validate_config(settings(backend, tmp_path))
    assert await asyncio.to_thread(upgrade, config) == "0001"
    async with AuditStore(backend.url, schema=backend.schema, create=False) as store:
        assert (await store.head()).seq == 1  # the existing chain is untouched


def test_cli_upgrade_and_current(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}), encoding="utf-8")
    run = [sys.executable, "-m", "advanced_rag.cli", "db"]
    before = subprocess.run([*run, "current", "--config", str(path)], capture_output=True,
                            text=True, timeout=120)
    assert before.returncode == 0 and "not migrated" in before.stdout
    done = subprocess.run([*run, "upgrade", "--config", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "revision 0001" in done.stdout, done.stderr
