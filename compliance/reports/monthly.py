"""The monthly compliance report: build it, write JSON + Markdown + HTML, sign, record.

Writes ``compliance-<YYYY-MM>.{json,md,html}`` into ``<data_dir>/reports/compliance`` (or
``out_dir``), signs the JSON file with the audit signing key (``compliance-<YYYY-MM>.json.sig``;
with no key configured the report and the result say so, and nothing fails), and records a
``compliance_report`` audit event holding the SHA-256 of the JSON's canonical content.

A chain that fails verification does not stop the report: it is written, says so on top of
every file, and :attr:`MonthlyReportResult.exit_code` is 4 (the scheduled job raises
:class:`~compliance.errors.AuditIntegrityError` after writing, so the run is recorded as
``job_failed``).

Example::

    result = await write_monthly_report(config, month="2026-10")
    result.files["html"], result.digest, result.signed, result.exit_code
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from advanced_rag.config import PipelineConfig
from advanced_rag.errors import InputError

from ..audit.checkpoints import PublicKeyLike
from ..audit.models import AuditEvent, AuditEventType
from ..errors import AuditIntegrityError, AuditWriteError
from .model import ComplianceReport
from .render import render_html, render_markdown
from .signing import DIGEST_FIELD, ReportSigner, content_digest, signature_path

__all__ = ["EXIT_CHAIN_INVALID", "EXIT_OK", "REPORT_KIND", "MonthlyReportResult",
           "last_full_month", "month_bounds", "scheduled_monthly_report", "write_monthly_report"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CHAIN_INVALID = 4
"""Exit code of the monthly report when the audit chain failed verification."""
REPORT_KIND = "advanced-rag/compliance-report"


def month_bounds(label: str) -> tuple[datetime, datetime]:
    """``"2026-10"`` → [2026-10-01 00:00 UTC, 2026-11-01 00:00 UTC)."""
    try:
        year, month = (int(part) for part in label.split("-"))
        first = date(year, month, 1)
    except ValueError:
        raise InputError(f"month {label!r} is not a calendar month like 2026-10") from None
    if len(label) != 7:
        raise InputError(f"month {label!r} is not a calendar month like 2026-10")
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return (datetime.combine(first, time(0), tzinfo=UTC),
            datetime.combine(following, time(0), tzinfo=UTC))


def last_full_month(now: datetime) -> str:
    """The calendar month (UTC) before the one ``now`` falls in."""
    today = now.astimezone(UTC).date()
    year, month = (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)
    return f"{year:04d}-{month:02d}"


@dataclass(frozen=True)
class MonthlyReportResult:
    """What :func:`write_monthly_report` wrote and recorded.

    ``files`` maps ``json``/``markdown``/``html`` (and ``signature`` when signed) to paths;
    ``digest`` is the SHA-256 of the JSON's canonical content; ``recorded_seq`` the ``seq`` of
    the ``compliance_report`` audit event (``None`` if it could not be written to a chain that
    failed verification: ``warnings`` says why).
    """

    period: str
    report: ComplianceReport
    files: dict[str, str]
    digest: str
    signed: bool
    key_id: str | None
    signing_note: str
    recorded_seq: int | None
    warnings: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """cron-friendly: 0 the chain verified, 4 it did not (the report is written anyway)."""
        return EXIT_OK if self.report.chain.verified else EXIT_CHAIN_INVALID


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _write_files(files: dict[str, str], report: ComplianceReport, data: dict[str, Any],
                 meta: dict[str, Any]) -> None:
    Path(files["json"]).parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(Path(files["json"]), json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    _atomic_write(Path(files["markdown"]), render_markdown(report, meta))
    _atomic_write(Path(files["html"]), render_html(report, meta))


def _event_payload(report: ComplianceReport, digest: str, files: dict[str, str],
                   signing: dict[str, Any]) -> dict[str, Any]:
    chain = report.chain
    return {"period": report.period, "start": report.start.isoformat(),
            "end": report.end.isoformat(), "report_sha256": digest, "files": files,
            "signed": signing["signed"], "key_id": signing.get("key_id"),
            "chain_verified": chain.verified, "head_seq": chain.head_seq,
            "head_hash": chain.head_hash,
            "chain_failure_seq": chain.failure.seq if chain.failure else None,
            "total_events": report.total_events, "retrievals": report.retrieval.requests,
            "sla_compliance_rate": report.retrieval.sla.compliance_rate,
            "access_denied": report.access_denied.count}


async def write_monthly_report(config: PipelineConfig, *, month: str | None = None,
                               now: datetime | None = None, out_dir: str | Path | None = None,
                               actor: str = "scheduler",
                               public_key: PublicKeyLike | None = None) -> MonthlyReportResult:
    """Build, write, sign and record the report of ``month`` (default: the last full calendar
    month before ``now``, UTC). ``public_key`` pins the checkpoint signing key verification
    accepts (default: keys named by the anchor file, as ``audit verify`` does)."""
    from ..manager import ComplianceManager

    period = month or last_full_month(now or datetime.now(UTC))
    start, end = month_bounds(period)
    signer = ReportSigner.from_settings(config.audit)  # an unreadable key fails before any work
    folder = Path(out_dir) if out_dir is not None else Path(config.data_dir) / "reports" / "compliance"
    stem = folder / f"compliance-{period}"
    files = {"json": str(stem.with_suffix(".json")), "markdown": str(stem.with_suffix(".md")),
             "html": str(stem.with_suffix(".html"))}
    if signer is not None:
        sig = str(signature_path(files["json"]))
        signing: dict[str, Any] = {"signed": True, "algorithm": "Ed25519", "key_id": signer.key_id,
                                   "public_key": signer.public_key_hex,
                                   "signature_file": Path(sig).name}
        note = f"signed with key {signer.key_id}: {sig}"
    else:
        signing = {"signed": False, "reason": (
            f"no signing key configured (set {config.audit.signing_key_env} or "
            "audit.signing_key_file; `advanced-rag audit keygen` makes one): the report's digest "
            "is recorded in the audit log, but the file carries no signature")}
        note = f"NOT SIGNED: {signing['reason']}"
    warnings: list[str] = []
    async with ComplianceManager(config) as cm:
        report = await cm.generate_compliance_report(start_date=start, end_date=end, period=period,
                                                     public_key=public_key)
        data: dict[str, Any] = {"kind": REPORT_KIND, "version": 1, **report.to_dict(),
                                "files": {k: Path(v).name for k, v in files.items()},
                                "signing": signing}
        digest = content_digest(data)
        data[DIGEST_FIELD] = digest
        meta = {"signing": signing, "sha256": digest}
        await asyncio.to_thread(_write_files, files, report, data, meta)
        if signer is not None:
            files["signature"] = str(await asyncio.to_thread(signer.sign_file, files["json"]))
        else:
            # a signature left from an earlier run would vouch for other bytes
            await asyncio.to_thread(signature_path(files["json"]).unlink, missing_ok=True)
        event = AuditEvent(AuditEventType.COMPLIANCE_REPORT, actor,
                           _event_payload(report, digest, files, signing),
                           request_id=f"compliance-{period}")
        try:
            recorded_seq: int | None = (await cm.store.append(event)).seq
        except AuditWriteError as exc:
            if report.chain.verified:
                raise
            recorded_seq = None
            warnings.append(f"the compliance_report event could not be recorded: {exc}")
            log.error("compliance report %s: %s", period, warnings[-1])
    return MonthlyReportResult(period=period, report=report, files=files, digest=digest,
                               signed=signer is not None,
                               key_id=signer.key_id if signer is not None else None,
                               signing_note=note, recorded_seq=recorded_seq,
                               warnings=tuple(warnings))


async def scheduled_monthly_report(config: PipelineConfig, *, now: datetime) -> dict[str, Any]:
    """The scheduler's ``monthly_report`` job: the last full month; a summary. Raises
    :class:`AuditIntegrityError` (after writing the report) when the chain failed verification,
    so the run is recorded as ``job_failed``."""
    result = await write_monthly_report(config, now=now, actor="scheduler")
    chain = result.report.chain
    if chain.failure is not None:
        f = chain.failure
        raise AuditIntegrityError(f.seq, f.expected, f.actual,
                                  f"{f.reason} (compliance report {result.period} written to "
                                  f"{result.files['html']}, saying so)")
    return {"period": result.period, "report_sha256": result.digest, "files": result.files,
            "signed": result.signed, "key_id": result.key_id, "chain_verified": chain.verified,
            "head_seq": chain.head_seq, "total_events": result.report.total_events,
            "retrievals": result.report.retrieval.requests,
            "sla_compliance_rate": result.report.retrieval.sla.compliance_rate}
