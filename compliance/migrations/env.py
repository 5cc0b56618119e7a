"""Alembic environment: runs on the connection handed over by :func:`compliance.migrations.upgrade`."""

from __future__ import annotations

from alembic import context

from compliance.migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `advanced-rag db upgrade` (it opens the "
                       "configured database); offline SQL generation is not supported")
context.configure(connection=connection, target_metadata=None,
                  version_table=VERSION_TABLE,
                  version_table_schema=context.config.attributes.get("schema"),
                  transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
