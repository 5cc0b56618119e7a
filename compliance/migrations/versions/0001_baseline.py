"""Baseline: audit chain with guards, query log and drift, holds, lineage, keys, scheduler lock.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Installs every table with the components' idempotent installers as of release 0.1, so a
database that an earlier version created on first open is adopted unchanged. Later schema
changes are explicit revisions after this one.
"""

from __future__ import annotations

from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    from sqlmodel import SQLModel

    from advanced_rag.drift.store import _TABLES as DRIFT_TABLES
    from compliance.audit.engine import install_on
    from compliance.erasure.keys import _TABLE as SUBJECT_KEYS
    from compliance.lineage import DocumentVersionRow
    from compliance.retention.holds import LegalHoldRow
    from compliance.scheduler_lock import _lock_table

    conn = op.get_bind()
    schema = context.config.attributes.get("schema")
    missing = install_on(conn, schema=schema, create=True)
    if missing:
        raise RuntimeError(f"the audit schema could not be installed (missing: {missing})")
    SQLModel.metadata.create_all(conn, tables=[
        *DRIFT_TABLES, LegalHoldRow.__table__, DocumentVersionRow.__table__,  # type: ignore[attr-defined]
        SUBJECT_KEYS])
    _lock_table(schema).create(conn, checkfirst=True)


def downgrade() -> None:
    raise RuntimeError("the baseline cannot be downgraded: restore a backup instead (the audit "
                       "tables are append-only by design)")
