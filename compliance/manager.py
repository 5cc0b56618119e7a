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
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from advanced_rag.config import PipelineConfig
from advanced_rag.errors import InputError

from .audit.checkpoints import PublicKeyLike
from .audit.export import ExportReport, export_jsonl
from .audit.models import AuditEvent, AuditEventType, AuditRecord, Checkpoint
from .audit.store import AuditStore
from .audit.trail import AuditTrail
from .audit.verify import VerificationReport, verify_chain
from .errors import AuditIntegrityError
from .lineage import (
    DocumentVersion,
    LineageStore,
    RequestExplanation,
    explain_request,
    supporting_keys,
)
from .reports.model import ComplianceReport

if TYPE_CHECKING:
    from .erasure.erase import ErasureReport, SubjectStatus
    from .retention.holds import Hold, HoldScope, LegalHolds
    from .retention.job import RetentionResult

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
            self.config.audit.model_copy(update={"enabled": True}), data_dir=self.config.data_dir,
            erasure=self.config.erasure)
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
        exclusive, timezone-aware), oldest first unless ``newest_first``. Personal-data fields
        come back decrypted, or ``"[erased]"`` once the subject was erased (``payload_json``
        keeps the stored, encrypted text)."""
        _aware("start_time", start_time)
        _aware("end_time", end_time)
        if not 1 <= limit <= 100_000:
            raise InputError("limit must be between 1 and 100,000")
        store = await self._store()
        return await self._trail.readable(await store.query(
            event_type=event_type, start_time=start_time, end_time=end_time, tenant=tenant,
            actor=actor, limit=limit, descending=newest_first), copy=False)

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

    # -- lineage (compliance/lineage.py) ---------------------------------------------------

    async def get_document_lineage(self, doc_id: str,
                                   tenant: str | None = None) -> list[DocumentVersion]:
        """Every recorded version of ``doc_id`` (the seed's name), oldest first."""
        lineage = await LineageStore.open(self.config)
        try:
            return await lineage.lineage(doc_id, tenant)
        finally:
            await lineage.close()

    async def explain_request(self, request_id: str, *,
                              on: date | None = None) -> RequestExplanation:
        """Which version of which documents supported the answer given to ``request_id``:
        the retrieval's returned chunks with their document versions and content hashes, the
        citations of the answer, the decision. ``on`` (the request's UTC date) narrows the
        search; without it the newest 100,000 events are searched."""
        start = datetime.combine(on, time(0), tzinfo=UTC) if on is not None else None
        records = await self.query_audit_logs(
            start_time=start, end_time=start + timedelta(days=1) if start else None,
            limit=100_000, newest_first=start is None)
        records = sorted((r for r in records if r.request_id == request_id),
                         key=lambda r: r.seq)
        if not records:
            raise InputError(f"no audit event has request id {request_id!r}"
                             + (f" on {on.isoformat()}" if on else ""))
        lineage = await LineageStore.open(self.config)
        try:
            tenant = records[0].tenant
            versions = {}
            for doc_id, version in supporting_keys(records):
                entry = await lineage.version(tenant, doc_id, version) if tenant else None
                if entry is not None:
                    versions[(doc_id, version)] = entry
        finally:
            await lineage.close()
        return explain_request(request_id, records, versions)

    # -- reports (compliance/reports/) -------------------------------------------------------

    async def generate_compliance_report(self, start_date: date | datetime | None = None,
                                         end_date: date | datetime | None = None, *,
                                         period: str | None = None,
                                         anchor: str | Path | None = None,
                                         public_key: PublicKeyLike | None = None
                                         ) -> ComplianceReport:
        """The compliance report of ``[start_date, end_date)`` (the seed's name; a ``date`` is
        midnight UTC; neither: the last full calendar month). It verifies the whole chain first
        (against ``anchor``, default ``audit.anchor``): a failure is *in* the report
        (``report.chain.verified is False``), not raised. Read-only; to write, sign and record
        the files use :func:`compliance.reports.write_monthly_report`.

        Example::

            report = await cm.generate_compliance_report(start_date=date(2026, 10, 1),
                                                         end_date=date(2026, 11, 1))
            report["total_events"], report["version_updates"], report.chain.verified
        """
        from .reports.collect import build_compliance_report, resolve_period

        start, end, label = resolve_period(start_date, end_date, period)
        store = await self._store()
        return await build_compliance_report(
            store, start=start, end=end, period=label,
            target_latency_ms=self.config.pipeline.target_latency_ms,
            anchor=anchor if anchor is not None else self.config.audit.anchor,
            public_key=public_key)

    # -- erasure (compliance/erasure/) -------------------------------------------------------

    async def erase_subject(self, subject_id: str, *, actor: str, reason: str) -> ErasureReport:
        """Erase a data subject by crypto-shredding (GDPR Art. 17): refused under a legal hold,
        otherwise destroys its key, deletes its query-log rows and records an ``erasure``
        event (see :func:`compliance.erasure.erase.erase_subject`).

        Example::

            report = await cm.erase_subject("user-8841", actor="dpo", reason="Art. 17 #77")
        """
        from .erasure.erase import erase_subject

        await self.open()
        return await erase_subject(self.config, subject_id, actor=actor, reason=reason,
                                   trail=self._trail)

    async def erasure_status(self, subject_id: str) -> SubjectStatus:
        """The subject's keys (live or destroyed), events, query-log rows and holds."""
        from .erasure.erase import subject_status

        await self.open()
        return await subject_status(self.config, subject_id, trail=self._trail)

    # -- retention and legal holds (compliance/retention/) ---------------------------------

    async def enforce_retention_policy(self, *, now: datetime | None = None,
                                       dry_run: bool = False,
                                       actor: str = "system") -> RetentionResult:
        """Apply ``retention:`` at ``now`` (default: the current time; timezone-aware): redact
        or prune old audit events, delete old query-log rows, drift snapshots, report files
        and documents, skipping whatever a legal hold covers, and record the plan and outcome
        as ``retention`` events. ``dry_run`` only plans (writes nothing). A class that failed
        raises :class:`~compliance.errors.RetentionError` after the others ran.

        Example::

            plan = (await cm.enforce_retention_policy(dry_run=True)).plan
            [(c.record_class, c.selected, [h.hold_id for h in c.held]) for c in plan.classes]
        """
        from .retention.job import run_retention

        _aware("now", now)
        await self.open()
        return await run_retention(self.config, now=now, dry_run=dry_run, actor=actor,
                                   trail=self._trail)

    async def place_legal_hold(self, scope: HoldScope, *, reason: str, actor: str,
                               tenant: str | None = None, doc_id: str | None = None,
                               subject: str | None = None, start: datetime | None = None,
                               end: datetime | None = None) -> Hold:
        """Place a legal hold (scope ``tenant``, ``document``, ``subject`` or ``time_range``)
        and record it as a ``legal_hold`` event with its reason and actor. A subject is stored
        and recorded only as its SHA-256.

        Example::

            hold = await cm.place_legal_hold("tenant", tenant="bank-a", actor="legal",
                                             reason="SEC inquiry 2026-17")
        """
        holds = await self._holds()
        try:
            hold = await holds.place(scope, reason=reason, actor=actor, tenant=tenant,
                                     doc_id=doc_id, subject=subject, start=start, end=end)
        finally:
            await holds.close()
        await self._record_hold(hold, "placed", actor, hold.reason)
        return hold

    async def release_legal_hold(self, hold_id: str, *, reason: str, actor: str) -> Hold:
        """Release an active hold (kept on file) and record it as a ``legal_hold`` event."""
        if not reason or not reason.strip():
            raise InputError("releasing a legal hold needs a reason")
        holds = await self._holds()
        try:
            hold = await holds.release(hold_id, actor=actor, reason=reason.strip())
        finally:
            await holds.close()
        await self._record_hold(hold, "released", actor, reason.strip())
        return hold

    async def legal_holds(self) -> list[Hold]:
        """The active legal holds, oldest first."""
        holds = await self._holds()
        try:
            return sorted(await holds.active(), key=lambda h: h.placed_at)
        finally:
            await holds.close()

    async def _holds(self) -> LegalHolds:
        from .retention.holds import LegalHolds

        await self.open()
        return await LegalHolds.open(self.config)

    async def _record_hold(self, hold: Hold, action: str, actor: str, reason: str) -> None:
        await self._trail.record([AuditEvent(AuditEventType.LEGAL_HOLD, actor, {
            "action": action, "hold_id": hold.id, "scope": hold.scope, "tenant": hold.tenant,
            "doc_id": hold.doc_id, "subject_ref": hold.subject_ref,
            "start": hold.start.isoformat() if hold.start else None,
            "end": hold.end.isoformat() if hold.end else None,
            "reason": self._trail.text(reason)}, tenant=hold.tenant)])


def _text(value: str | Path | None) -> str | None:
    return None if value is None else str(value)
