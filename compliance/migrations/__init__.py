"""Schema migrations (Alembic) for everything advanced-rag keeps in its SQL database.

One Alembic history covers the audit tables and their append-only guards, the query log and
drift tables, legal holds, document versions, subject keys and the scheduler lock, on SQLite
and PostgreSQL. Revision ``0001`` is the baseline: it installs the schema as the components'
idempotent installers create it (so databases created before migrations existed are adopted
as they are); every later schema change is a new revision in ``versions/``. Run upgrades as
the schema owner; the application can then run with ``audit.create: false``.

    advanced-rag db upgrade            # to the newest revision
    advanced-rag db current
    advanced-rag db history

Example::

    revision = await asyncio.to_thread(upgrade, load_config("config.yaml"))
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from ..audit.engine import WRITE_OPTION, make_engine

if TYPE_CHECKING:
    from advanced_rag.config import PipelineConfig

__all__ = ["HERE", "alembic_config", "current", "history", "upgrade"]

HERE = Path(__file__).resolve().parent
VERSION_TABLE = "advanced_rag_schema_version"


def alembic_config(connection: Connection | None = None, *, schema: str | None = None) -> Config:
    """A programmatic Alembic config (no alembic.ini): this folder, an open connection."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    cfg.attributes["schema"] = schema
    return cfg


def _connect(config: PipelineConfig) -> tuple[object, str | None]:
    url = make_url(config.audit.resolved_url(config.data_dir))
    engine = make_engine(url, schema=config.audit.db_schema,
                         sqlite_synchronous=config.audit.sqlite_synchronous, busy_timeout_s=30.0)
    return engine, config.audit.db_schema


def upgrade(config: PipelineConfig, revision: str = "head") -> str | None:
    """Apply migrations up to ``revision``; returns the revision the database is now at."""
    engine, schema = _connect(config)
    try:
        with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:  # type: ignore[attr-defined]
            if schema is not None and conn.dialect.name == "postgresql":
                # Alembic writes its version table before the first revision runs.
                # Only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database
                # even when the schema exists, which a schema owner role need not have.
                exists = conn.scalar(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"),
                                     {"s": schema})
                if exists is None:
                    conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')  # validated name
                conn.commit()
            command.upgrade(alembic_config(conn, schema=schema), revision)
            conn.commit()
            return _current(conn, schema)
    finally:
        engine.dispose()  # type: ignore[attr-defined]


def _current(conn: Connection, schema: str | None) -> str | None:
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE,
                                                     "version_table_schema": schema})
    return context.get_current_revision()


def current(config: PipelineConfig) -> str | None:
    """The revision the database is at (``None``: never migrated)."""
    engine, schema = _connect(config)
    try:
        with engine.connect() as conn:  # type: ignore[attr-defined]
            return _current(conn, schema)
    finally:
        engine.dispose()  # type: ignore[attr-defined]


def history() -> list[tuple[str, str | None, str]]:
    """Every revision, oldest first: (revision, down revision, first line of its docstring)."""
    scripts = ScriptDirectory.from_config(alembic_config())
    out = []
    for script in reversed(list(scripts.walk_revisions())):
        down = script.down_revision if isinstance(script.down_revision, str | None) else None
        out.append((script.revision, down, (script.doc or "").strip().splitlines()[0]))
    return out
