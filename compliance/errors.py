"""One exception tree for the compliance package, rooted in the library's own root.

::

    AdvancedRagError                    (advanced_rag.errors)
    └── ComplianceError                 anything the compliance package raised on purpose
        ├── AuditIntegrityError         the audit chain fails verification (names the first bad seq)
        ├── AuditWriteError             an audit event could not be written (nothing was half-written)
        ├── RetentionError              a retention, legal-hold or erasure step failed
        │   └── SubjectHeldError        erasure refused: a legal hold covers the subject
        └── SchedulerError              a scheduled job could not be set up or run
            └── SchedulerLockedError    another scheduler holds the database lock

Callers catch :class:`ComplianceError` for "the compliance layer refused or failed", or
:class:`~advanced_rag.errors.AdvancedRagError` for anything the library raised on purpose.
Database and crypto errors are wrapped with ``raise ... from exc`` so the original stays attached.

Example::

    try:
        await verify_chain(store, anchor=Path("audit-anchor.jsonl"))
    except AuditIntegrityError as exc:
        alert(f"audit chain broken at seq {exc.seq}: {exc.reason}")
"""

from __future__ import annotations

from typing import Any

from advanced_rag.errors import AdvancedRagError

__all__ = ["AuditIntegrityError", "AuditWriteError", "ComplianceError", "RetentionError",
           "SubjectHeldError",
           "SchedulerError", "SchedulerLockedError"]


class ComplianceError(AdvancedRagError):
    """Root of every error the compliance package raises on purpose."""


class AuditIntegrityError(ComplianceError):
    """The audit chain does not verify; ``seq`` is the first sequence number found bad.

    ``expected`` is what verification computed (or what a signed checkpoint promised),
    ``actual`` what the database holds; either is ``None`` when there is nothing to show
    (a missing row has no actual value).

    Example::

        >>> str(AuditIntegrityError(7, "ab12", "cd34", "entry hash mismatch"))
        "audit chain broken at seq 7: entry hash mismatch (expected 'ab12', found 'cd34')"
    """

    def __init__(self, seq: int, expected: str | None, actual: str | None, reason: str) -> None:
        detail = f" (expected {expected!r}, found {actual!r})" if (expected or actual) else ""
        super().__init__(f"audit chain broken at seq {seq}: {reason}{detail}")
        self.seq = seq
        self.expected = expected
        self.actual = actual
        self.reason = reason


class AuditWriteError(ComplianceError):
    """An audit event (or checkpoint, or redaction) could not be written.

    A failed append writes nothing: the transaction that would have held it is rolled back,
    so the chain never holds half an append.
    """


class RetentionError(ComplianceError):
    """A retention, legal-hold or erasure step failed or was refused."""


class SubjectHeldError(RetentionError):
    """Erasure refused: an active legal hold covers the subject (``hold`` names it)."""

    def __init__(self, hold: Any) -> None:
        super().__init__(f"erasure refused: {hold.describe()} (release the hold first)")
        self.hold = hold


class SchedulerError(ComplianceError):
    """A scheduled job could not be registered, found or run."""


class SchedulerLockedError(SchedulerError):
    """Another scheduler process holds the single-scheduler lock in the database.

    ``holder`` names it (host, pid) and ``expires_at`` is when its lock lapses unless renewed.
    """

    def __init__(self, holder: str, expires_at: object) -> None:
        super().__init__(f"another scheduler is running ({holder}); its lock expires at "
                         f"{expires_at} unless renewed. Run exactly one scheduler per database.")
        self.holder = holder
        self.expires_at = expires_at
