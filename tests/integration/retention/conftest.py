"""Databases for the retention tests: a SQLite file under the test's data folder, and (when
``AUDIT_TEST_POSTGRES_URL`` is set) a fresh PostgreSQL schema per test, dropped afterwards.

``Db.backend`` is the audit tests' :class:`Backend`: raw SQL behind the library's back, the
way an attacker or a careless operator would, and dropping the guards first when needed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from advanced_rag.config import PipelineConfig, validate_config
from compliance.audit import CheckpointSigner
from tests.integration.audit.conftest import Backend, conninfo, pg_url_or_skip

NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
"""The frozen policy clock of these tests: a day ahead, so records written by the run itself
(at the real time) are never due."""


@dataclass
class Db:
    backend: Backend
    data_dir: Path
    audit: dict[str, Any]

    @property
    def name(self) -> str:
        return self.backend.name

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.backend.sql(statement, params)

    def config(self, retention: dict[str, Any] | None = None, **extra: Any) -> PipelineConfig:
        audit = {**self.audit, **extra.pop("audit", {})}
        return validate_config({"data_dir": str(self.data_dir), "audit": audit,
                                "retention": retention or {}, **extra})

    def dump(self) -> list[tuple[Any, ...]]:
        """Every row of every table retention touches, to show that nothing changed (a table
        not created yet counts as empty: opening the drift store creates its tables)."""
        rows: list[tuple[Any, ...]] = []
        for table, key in (("audit_events", "seq"), ("audit_prunes", "id"),
                           ("query_log", "id"), ("drift_reference", "name"),
                           ("drift_report", "id"), ("legal_holds", "id")):
            try:
                rows += [(table, *row) for row in self.sql(f"SELECT * FROM {table} ORDER BY {key}")]
            except Exception:  # noqa: BLE001 - a table not created yet is an empty table
                continue
        return rows


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    """Each test that takes ``db`` runs on SQLite and on PostgreSQL."""
    data = tmp_path / "data"
    if request.param == "sqlite":
        yield Db(Backend("sqlite", f"sqlite:///{data / 'audit.db'}"), data, {})
        return
    import psycopg

    url = pg_url_or_skip()
    schema = f"ret_t_{uuid.uuid4().hex[:12]}"
    try:
        yield Db(Backend("postgresql", url, schema), data, {"url": url, "schema": schema})
    finally:
        with psycopg.connect(conninfo(url), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, CheckpointSigner]:
    """A checkpoint signing key on disk (``audit.signing_key_file``) and its signer."""
    signer = CheckpointSigner.generate()
    path = tmp_path / "signing.pem"
    signer.save(path)
    return path, signer
