"""The weekly drift report: one ISO week of logged traffic against the named reference.

Reads only SQL (the query log, corpus samples, the reference snapshot): no Milvus, no model,
so cron can run it anywhere the database is reachable. Writes
``<report_dir>/drift-<week>[-<tenant>].{json,md,html}`` (the HTML page embeds its PNG
charts), records a ``drift_report`` audit event holding the report and its SHA-256, and
keeps the verdict in ``drift_report`` for next weeks' trend chart.

Example::

    result = await weekly_report(config, week="2026-W47")
    result.report.status, result.files["html"]
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from compliance.audit.trail import AuditTrail

from .. import recording
from ..config import PipelineConfig
from ..errors import InputError
from ..store.filters import check_tenant
from .detector import DriftReport, DriftStatus, Window
from .monitor import DriftMonitor, to_window
from .render import render_html, render_markdown
from .store import DriftReportRow, DriftStore

__all__ = ["WeeklyResult", "iso_week", "last_full_week", "scheduled_weekly_report",
           "weekly_report"]


def iso_week(label: str) -> tuple[datetime, datetime]:
    """``"2026-W47"`` → [Monday 00:00 UTC, next Monday 00:00 UTC)."""
    try:
        year, week = label.split("-W")
        monday = date.fromisocalendar(int(year), int(week), 1)
    except ValueError:
        raise InputError(f"week {label!r} is not an ISO week like 2026-W47") from None
    start = datetime.combine(monday, time(0), tzinfo=UTC)
    return start, start + timedelta(days=7)


def last_full_week(now: datetime) -> str:
    """The ISO week before the one ``now`` falls in."""
    year, week, _ = (now.astimezone(UTC).date() - timedelta(days=7)).isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True)
class WeeklyResult:
    period: str
    reference: str
    report: DriftReport
    files: dict[str, str]
    digest: str

    @property
    def exit_code(self) -> int:
        """cron-friendly: 0 no drift (or not enough data), 3 drift detected."""
        return 3 if self.report.drift_detected else 0


async def weekly_report(config: PipelineConfig, *, week: str | None = None,
                        now: datetime | None = None, tenant: str | None = None,
                        actor: str = "scheduler", out_dir: str | Path | None = None
                        ) -> WeeklyResult:
    """Compare ``week`` (default: the last full ISO week) with ``drift.reference``."""
    if tenant is not None:
        check_tenant(tenant)  # it names the files too
    period = week or last_full_week(now or datetime.now(UTC))
    start, end = iso_week(period)
    folder = Path(out_dir or config.drift.report_dir or Path(config.data_dir) / "reports" / "drift")
    async with DriftStore.from_config(config) as store:
        monitor = DriftMonitor(store, config.drift)
        reference = await monitor.reference()
        current = await store.window(period, start=start, end=end, tenant=tenant)
        corpus_cut = reference.window_end or reference.created_at
        corpus_reference = await store.corpus_embeddings(end=corpus_cut, tenant=tenant)
        corpus_current = await store.corpus_embeddings(start=start, end=end, tenant=tenant)
        report = await monitor.compare(reference, current, corpus_reference=corpus_reference,
                                       corpus_current=corpus_current)
        history = await store.report_history(reference.name, tenant)
        data = {"period": period, "reference": reference.name,
                "reference_description": reference.description, "tenant": tenant,
                "generated_at": datetime.now(UTC).isoformat(), "report": report.to_dict()}
        digest = recording.report_digest(data)
        stem = folder / (f"drift-{period}" + (f"-{tenant}" if tenant else ""))
        files = {"json": str(stem.with_suffix(".json")), "markdown": str(stem.with_suffix(".md")),
                 "html": str(stem.with_suffix(".html"))}
        trend = [(row.period, row.magnitude) for row in history] + [
            (period, report.drift_magnitude)]
        windows = to_window(reference), to_window(current, period)
        await asyncio.to_thread(_write_files, files, report, {**data, "sha256_of_report": digest},
                                trend, windows, config.drift.alpha)
        async with AuditTrail.from_settings(config.audit, data_dir=config.data_dir,
                                            erasure=config.erasure) as trail:
            ctx = recording.CallContext(actor, tenant, request_id=f"drift-{period}", session=None)
            await trail.record([recording.drift_event(report, ctx, reference=reference.name,
                                                      period=period, files=files,
                                                      digest=digest)])
        await store.add_report(DriftReportRow(
            period=period, reference=reference.name, tenant=tenant, created_at=datetime.now(UTC),
            status=str(report.status), magnitude=report.drift_magnitude, digest=digest))
    return WeeklyResult(period, reference.name, report, files, digest)


def _write_files(files: dict[str, str], report: DriftReport, data: dict[str, Any],
                 trend: list[tuple[str, float | None]], windows: tuple[Window, Window],
                 alpha: float) -> None:
    Path(files["json"]).parent.mkdir(parents=True, exist_ok=True)
    Path(files["json"]).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    Path(files["markdown"]).write_text(render_markdown(report, data, trend, *windows),
                                       encoding="utf-8")
    Path(files["html"]).write_text(render_html(report, data, trend, *windows, alpha=alpha),
                                   encoding="utf-8")


async def scheduled_weekly_report(config: PipelineConfig, *, now: datetime) -> dict[str, Any]:
    """The scheduler's ``weekly_drift`` job: last full week, all tenants; a summary."""
    result = await weekly_report(config, now=now, actor="scheduler")
    return {"period": result.period, "reference": result.reference, "status": str(result.report.status),
            "drift_detected": result.report.drift_detected,
            "drift_magnitude": result.report.drift_magnitude,
            "insufficient_data": result.report.status is DriftStatus.INSUFFICIENT_DATA,
            "report_sha256": result.digest, "files": result.files}
