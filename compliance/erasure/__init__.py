"""Erasure (GDPR Art. 17) by crypto-shredding.

Personal data in audit payloads (``erasure.fields``: the query, question and answer by
default) is encrypted under a data key per subject (the event's ``actor``) before it is
written; the chain hashes the ciphertext. Erasing a subject destroys its key: every payload
field it encrypted becomes unreadable (readers see ``"[erased]"``) while every hash, and
therefore chain verification, stays as it was. Nothing in the chain is rewritten.

- :mod:`.crypto` — the envelope and key wrapping (pure functions)
- :mod:`.keys` — the ``subject_keys`` table
- :mod:`.cipher` — encrypt on write, decrypt on read (used by ``AuditTrail``)
- :mod:`.erase` — :func:`erase_subject` and :func:`subject_status`

Example::

    async with ComplianceManager(load_config("config.yaml")) as cm:
        report = await cm.erase_subject("user-8841", actor="dpo", reason="Art. 17 #77")
        status = await cm.erasure_status("user-8841")   # status.erased is True
"""

from __future__ import annotations

from .crypto import ERASED
from .erase import ErasureReport, SubjectHeldError, SubjectStatus, erase_subject, subject_status

__all__ = ["ERASED", "ErasureReport", "SubjectHeldError", "SubjectStatus", "erase_subject",
           "subject_status"]
