"""Compliance tooling for advanced-rag.

- :mod:`compliance.audit` — the append-only, hash-chained, tamper-evident audit store
  (SQLite or PostgreSQL), signed checkpoints, verification, export, PII redaction, and the
  :class:`~compliance.audit.trail.AuditTrail` the pipeline records through.
- :class:`ComplianceManager` — the seed's entry point: ``query_audit_logs``,
  ``verify_audit_log``, ``export_audit_log``, ``checkpoint``, ``enforce_retention_policy``,
  legal holds, ``erase_subject``, ``get_document_lineage``, ``explain_request``,
  ``generate_compliance_report``.
- :mod:`compliance.retention` (policy, job, legal holds), :mod:`compliance.erasure`
  (crypto-shredding), :mod:`compliance.lineage` (document versions), :mod:`compliance.reports`
  (the monthly report), :mod:`compliance.scheduling` (APScheduler jobs).

Example::

    from compliance import ComplianceManager

    async with ComplianceManager() as cm:                 # ./.advanced-rag/audit.db
        report = await cm.verify_audit_log()
"""

from __future__ import annotations

from .errors import AuditIntegrityError, AuditWriteError, ComplianceError, RetentionError
from .manager import ComplianceManager

__all__ = [
    "AuditIntegrityError",
    "AuditWriteError",
    "ComplianceError",
    "ComplianceManager",
    "RetentionError",
]
