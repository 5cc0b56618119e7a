"""Immutable, tamper-evident audit log for advanced-rag (SQLite or PostgreSQL).

Every event is stored with a gap-free ``seq``, the SHA-256 digest of its canonical JSON
payload, and ``entry_hash = H(0x01 ‖ prev_hash ‖ H(0x00 ‖ entry))``, so changing, removing,
inserting or reordering any stored event breaks every later hash. The database itself
refuses UPDATE and DELETE (triggers); the one mutation allowed is erasing a payload
(``redact_payload``), which keeps the digest and therefore the chain verifiable, and deleting
the oldest rows behind a signed prune point (``prune``, see pruning.py), which verification
then starts from.
Ed25519-signed checkpoints, copied to an append-only anchor file outside the database,
catch even a full rewrite with recomputed hashes.

Quick start::

    from compliance.audit import AuditEvent, AuditEventType, AuditStore, verify_chain

    async with AuditStore() as store:                     # ./.advanced-rag/audit.db
        await store.append(AuditEvent(AuditEventType.RETRIEVAL, actor="svc-rag",
                                      payload={"query_sha256": "…", "top_k": 20},
                                      tenant="acme", request_id="r-42"))
        report = await verify_chain(store)

With checkpoints every 10,000 events and an anchor file on other storage::

    signer = CheckpointSigner.from_env("ADVANCED_RAG_AUDIT_SIGNING_KEY")
    store = AuditStore("postgresql+psycopg://rag_app@db/app", schema="audit", create=False,
                       signer=signer, checkpoint_every=10_000,
                       anchor="/mnt/worm/audit-anchor.jsonl")
    ...
    await verify_chain(store, anchor=Path("/mnt/worm/audit-anchor.jsonl"),
                       public_key=signer.public_key_hex)

PostgreSQL production roles
---------------------------
The application must not own the audit tables: an owner can drop the triggers. Install
once as a separate owner role, run the application with INSERT/SELECT only::

    -- as a DBA
    CREATE ROLE audit_owner LOGIN PASSWORD '…';   -- runs migrations / the first open()
    CREATE ROLE rag_app LOGIN PASSWORD '…';       -- the application
    CREATE ROLE rag_retention LOGIN PASSWORD '…'; -- the retention job (redaction only)
    CREATE SCHEMA audit AUTHORIZATION audit_owner;

    -- as audit_owner: creates tables, trigger functions, triggers and the head row
    --   await AuditStore("postgresql+psycopg://audit_owner@db/app", schema="audit").open()

    GRANT USAGE ON SCHEMA audit TO rag_app, rag_retention;
    GRANT SELECT, INSERT ON audit.audit_events, audit.audit_checkpoints TO rag_app;
    GRANT SELECT, UPDATE ON audit.audit_head TO rag_app;   -- appends lock and move the head
    GRANT USAGE ON SEQUENCE audit.audit_checkpoints_id_seq TO rag_app;
    GRANT SELECT, UPDATE (payload) ON audit.audit_events TO rag_retention;  -- NULL only (trigger)
    -- retention with audit_events.action: prune (triggers: only up to a signed prune point)
    GRANT SELECT, DELETE ON audit.audit_events TO rag_retention;
    GRANT SELECT, INSERT ON audit.audit_prunes TO rag_retention;
    GRANT USAGE ON SEQUENCE audit.audit_prunes_id_seq TO rag_retention;
    GRANT SELECT ON audit.audit_prunes TO rag_app;   -- verifying a pruned chain reads it
    -- no one else has DELETE, and no one but audit_owner TRUNCATE, TRIGGER or ownership

    -- the application then opens with create=False: it checks, never creates
    --   AuditStore("postgresql+psycopg://rag_app@db/app", schema="audit", create=False)

Keep the checkpoint signing key away from the database host, and the anchor file on
storage the database credentials cannot rewrite (object lock / WORM bucket, another host).
"""

from __future__ import annotations

from .checkpoints import CheckpointSigner
from .export import ExportCheck, ExportReport, export_jsonl, verify_export
from .models import AuditEvent, AuditEventType, AuditRecord, ChainHead, Checkpoint
from .redaction import Redaction, redact_payload, redact_text
from .store import AuditStore
from .trail import AuditTrail
from .verify import VerificationReport, verify_chain

__all__ = [
    "AuditEvent",
    "AuditEventType",
    "AuditRecord",
    "AuditStore",
    "AuditTrail",
    "ChainHead",
    "Checkpoint",
    "CheckpointSigner",
    "ExportCheck",
    "ExportReport",
    "Redaction",
    "VerificationReport",
    "export_jsonl",
    "redact_payload",
    "redact_text",
    "verify_chain",
    "verify_export",
]
