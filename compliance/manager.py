"""ComplianceManager: the seed's entry point for audit queries, verification and export.

The name is the seed's (its operations guide calls ``ComplianceManager().query_audit_logs``);
it is a thin facade over :class:`~compliance.audit.AuditStore` and the free functions that
do the work (:func:`~compliance.audit.verify_chain`, :func:`~compliance.audit.export_jsonl`).
``pipeline.compliance`` is the same object bound to the pipeline's audit store.

Example::

    async with ComplianceManager(load_config("config.yaml")) as cm:
        recent = await cm.query_audit_logs(event_type=AuditEventType.RETRIEVAL,
                                           start_time=datetime(2026, 11, 1, tzinfo=UTC),
                                           tenant="bank-a", limit=50)
        report = await cm.verify_audit_log(anchor="/mnt/worm/audit-anchor.jsonl")
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from advanced_rag.config import PipelineConfig
from advanced_rag.errors import InputError

from .audit.checkpoints import PublicKeyLike
from .audit.export import ExportReport, export_jsonl
from .audit.models import AuditEvent, AuditEventType, AuditRecord, Checkpoint
from .audit.store import AuditStore
from .audit.trail import AuditTrail
from .audit.verify import VerificationReport, verify_chain
from .errors import AuditIntegrityError

__all__ = ["ComplianceManager"]


def _aware(name: str, value: datetime | None) -> None:
    if value is not None and value.utcoffset() is None:
        raise InputError(f"{name} {value.isoformat()!r} is naive; give a timezone (UTC)")


class ComplianceManager:
    """Audit-log queries, chain verification (itself audited), checkpoints and export.

    Built from a config (opens its own store, closed by :meth:`close` / ``async with``) or
    from an open :class:`AuditTrail` (shares it; closing the manager leaves it open).
    Methods open the store on first use, so the seed's one-liners work without ``async with``.
    """

    def __init__(self, config: PipelineConfig | None = None, *,
                 trail: AuditTrail | None = None) -> None:
        self.config = config or PipelineConfig()
        self._owns = trail is None
        self._trail = trail or AuditTrail.from_settings(
            self.config.audit.model_copy(update={"enabled": True}), data_dir=self.config.data_dir)
        self._opened = not self._owns
        self._lock = asyncio.Lock()

    async def open(self) -> ComplianceManager:
        async with self._lock:
            if not self._opened:
                await self._trail.open()
                self._opened = True
        return self

    async def close(self) -> None:
        if self._owns and self._opened:
            await self._trail.close()
        self._opened = False

    async def __aenter__(self) -> ComplianceManager:
        return await self.open()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def store(self) -> AuditStore:
        return self._trail.store

    async def _store(self) -> AuditStore:
        await self.open()
        return self._trail.store

    async def query_audit_logs(self, event_type: AuditEventType | str | None = None, *,
                               start_time: datetime | None = None,
                               end_time: datetime | None = None, tenant: str | None = None,
                               actor: str | None = None, limit: int = 100,
                               newest_first: bool = False) -> list[AuditRecord]:
        """Events matching every given filter (``start_time`` inclusive, ``end_time``
        exclusive, timezone-aware), oldest first unless ``newest_first``."""
        _aware("start_time", start_time)
        _aware("end_time", end_time)
        if not 1 <= limit <= 100_000:
            raise InputError("limit must be between 1 and 100,000")
        store = await self._store()
        return await store.query(event_type=event_type, start_time=start_time, end_time=end_time,
                                 tenant=tenant, actor=actor, limit=limit, descending=newest_first)

    async def verify_audit_log(self, *, anchor: str | Path | None = None,
                               public_key: PublicKeyLike | None = None,
                               actor: str = "system", record: bool = True) -> VerificationReport:
        """Verify the whole chain (against ``anchor``, default ``audit.anchor``) and record the
        outcome as an ``audit_verified`` event, pass or fail; raises
        :class:`AuditIntegrityError` on failure."""
        store = await self._store()
        anchor = anchor if anchor is not None else self.config.audit.anchor
        try:
            report = await verify_chain(store, anchor=anchor, public_key=public_key)
        except AuditIntegrityError as exc:
            if record:
                await self._record(actor, {"outcome": "failed", "seq": exc.seq,
                                           "reason": exc.reason, "anchor": _text(anchor)})
            raise
        if record:
            await self._record(actor, {
                "outcome": "ok", "events_checked": report.events_checked,
                "last_seq": report.last_seq, "head_hash": report.head_hash,
                "signatures_checked": report.signatures_checked,
                "anchor": _text(anchor), "anchor_lines_checked": report.anchor_lines_checked,
                "last_valid_checkpoint_seq": (report.last_valid_checkpoint.seq
                                              if report.last_valid_checkpoint else None),
                "seconds": round(report.seconds, 3)})
        return report

    async def _record(self, actor: str, payload: dict[str, Any]) -> None:
        await self._trail.record([AuditEvent(AuditEventType.AUDIT_VERIFIED, actor, payload)])

    async def checkpoint(self) -> Checkpoint:
        """Sign the current head now (needs a signing key in ``audit:``)."""
        return await (await self._store()).checkpoint()

    async def export_audit_log(self, path: str | Path, *, start_time: datetime | None = None,
                               end_time: datetime | None = None,
                               anchor: str | Path | None = None,
                               public_key: PublicKeyLike | None = None,
                               overwrite: bool = False) -> ExportReport:
        """Verify the chain, then write ``start_time``..``end_time`` as JSONL with its
        verification report (see :func:`compliance.audit.export_jsonl`)."""
        store = await self._store()
        anchor = anchor if anchor is not None else self.config.audit.anchor
        return await export_jsonl(store, path, start_time=start_time, end_time=end_time,
                                  anchor=anchor, public_key=public_key, overwrite=overwrite)


def _text(value: str | Path | None) -> str | None:
    return None if value is None else str(value)
