"""Backends for the audit integration tests: a SQLite file per test, and (when
``AUDIT_TEST_POSTGRES_URL`` is set) a fresh PostgreSQL schema per test, dropped afterwards.

``Backend.sql`` runs SQL *behind the library's back* on a plain driver connection
(sqlite3 / psycopg, autocommit), the way an attacker or a careless operator would.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from compliance.audit import AuditStore, CheckpointSigner
from compliance.audit.guards import GUARD_NAMES

PG_ENV = "AUDIT_TEST_POSTGRES_URL"
REPO = Path(__file__).resolve().parents[3]


def pg_url_or_skip() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"set {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    return url


def conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@dataclass
class Backend:
    name: str
    url: str
    schema: str | None = None

    def store(self, **kwargs: Any) -> AuditStore:
        return AuditStore(self.url, schema=self.schema, **kwargs)

    def connect(self) -> Any:
        if self.name == "sqlite":
            return sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
        import psycopg

        return psycopg.connect(conninfo(self.url), autocommit=True,
                               options=f"-c search_path={self.schema}")

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement with ``?`` placeholders on a raw autocommit connection."""
        if self.name == "postgresql":
            statement = statement.replace("?", "%s")
        conn = self.connect()
        try:
            cursor = conn.execute(statement, params)
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            conn.close()

    def drop_guards(self) -> None:
        """What an attacker with owner rights does first."""
        if self.name == "sqlite":
            for name in GUARD_NAMES["sqlite"]:
                self.sql(f"DROP TRIGGER IF EXISTS {name}")
            return
        for name in GUARD_NAMES["postgresql"]:
            table = name.removesuffix("_guard").removesuffix("_no_truncate")
            self.sql(f"DROP TRIGGER IF EXISTS {name} ON {table}")


def _sqlite(tmp_path: Path) -> Backend:
    return Backend("sqlite", f"sqlite:///{tmp_path / 'audit.db'}")


@contextmanager
def _postgres(prefix: str = "audit_t", kind: type[Backend] = Backend) -> Iterator[Any]:
    """A ``kind`` (a :class:`Backend` or a subclass) on a fresh schema ``<prefix>_<random>``,
    dropped afterwards; skips the test without ``AUDIT_TEST_POSTGRES_URL``."""
    import psycopg

    url = pg_url_or_skip()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        yield kind("postgresql", url, schema)
    finally:
        with psycopg.connect(conninfo(url), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each test that takes ``backend`` runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield _sqlite(tmp_path)
        return
    with _postgres() as pg:
        yield pg


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    return _sqlite(tmp_path)


@pytest.fixture
def pg_backend() -> Iterator[Backend]:
    with _postgres() as pg:
        yield pg


@pytest.fixture
def anchor(tmp_path: Path) -> Path:
    """Where a test's signed checkpoints are anchored."""
    return tmp_path / "anchor.jsonl"


@pytest.fixture(scope="session")
def signer() -> CheckpointSigner:
    return CheckpointSigner.generate()


def child_env() -> dict[str, str]:
    """Environment for helper subprocesses: this repository importable, unbuffered output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable
