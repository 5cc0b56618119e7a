"""Latency trends from the audit log: per-stage p50/p95/p99 and SLA compliance per day, ISO
week or calendar month (UTC), from the recorded ``retrieval`` events.

The figures are the same as the monthly report's (``collect.retrieval_timing``): each
successful retrieval event's recorded stage latencies, and its total (recorded, or the sum of
the recorded stages) against ``pipeline.target_latency_ms``.

Example::

    trend, png = await performance_report(config, granularity="weekly")
    print(format_table(trend))          # and the chart is at png
"""

from __future__ import annotations

import asyncio
from array import array
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Literal

from advanced_rag.config import PipelineConfig
from advanced_rag.errors import InputError

from ..audit.models import AuditEventType
from ..audit.store import AuditStore
from .collect import TOTAL, period_records, retrieval_timing, sla_summary, stage_summaries
from .model import SlaSummary, StageLatency, _Item
from .monthly import month_bounds

__all__ = ["GRANULARITIES", "Granularity", "PerformanceBucket", "PerformanceTrend",
           "analyze_performance", "bucket_bounds", "default_range", "format_table",
           "performance_report", "render_chart"]

Granularity = Literal["daily", "weekly", "monthly"]
GRANULARITIES: tuple[Granularity, ...] = ("daily", "weekly", "monthly")


@dataclass(frozen=True, slots=True)
class PerformanceBucket(_Item):
    """One day, week or month: successful retrievals, failures, per-stage latency, SLA."""

    label: str
    start: datetime
    end: datetime
    requests: int
    errors: int
    stages: Mapping[str, StageLatency]
    sla: SlaSummary


@dataclass(frozen=True, slots=True)
class PerformanceTrend(_Item):
    """Buckets in time order, and ``overall`` over the whole range."""

    granularity: Granularity
    start: datetime
    end: datetime
    target_latency_ms: float
    buckets: tuple[PerformanceBucket, ...]
    overall: PerformanceBucket


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), time(0), tzinfo=UTC)


def _floor(granularity: Granularity, moment: datetime) -> datetime:
    day = _midnight(moment)
    if granularity == "daily":
        return day
    if granularity == "weekly":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next(granularity: Granularity, start: datetime) -> datetime:
    if granularity == "daily":
        return start + timedelta(days=1)
    if granularity == "weekly":
        return start + timedelta(days=7)
    return month_bounds(f"{start:%Y-%m}")[1]


def _label(granularity: Granularity, start: datetime) -> str:
    if granularity == "daily":
        return f"{start:%Y-%m-%d}"
    if granularity == "weekly":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{start:%Y-%m}"


def bucket_bounds(granularity: Granularity, start: datetime,
                  end: datetime) -> list[tuple[str, datetime, datetime]]:
    """Calendar-aligned buckets covering ``[start, end)``, the first and last clipped to it."""
    if granularity not in GRANULARITIES:
        raise InputError(f"period {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    if start.utcoffset() is None or end.utcoffset() is None:
        raise InputError("start and end must be timezone-aware (UTC)")
    if end <= start:
        raise InputError(f"the range is empty: {start.isoformat()} is not before {end.isoformat()}")
    out, cursor = [], _floor(granularity, start)
    while cursor < end:
        nxt = _next(granularity, cursor)
        out.append((_label(granularity, cursor), max(cursor, start), min(nxt, end)))
        cursor = nxt
    if len(out) > 5000:
        raise InputError(f"{len(out)} {granularity} buckets: choose a shorter range or a coarser "
                         "period")
    return out


def default_range(granularity: Granularity, now: datetime) -> tuple[datetime, datetime]:
    """The last 30 full days, 12 full ISO weeks, or 12 full calendar months before ``now``."""
    if granularity == "daily":
        end = _midnight(now)
        return end - timedelta(days=30), end
    if granularity == "weekly":
        end = _floor("weekly", now)
        return end - timedelta(weeks=12), end
    end = _floor("monthly", now)
    start = end
    for _ in range(12):
        start = _floor("monthly", start - timedelta(days=1))
    return start, end


class _Bucket:
    def __init__(self) -> None:
        self.stages: defaultdict[str, array[float]] = defaultdict(lambda: array("d"))
        self.errors = 0
        self.recorded = 0

    def add(self, stages: Mapping[str, float], total: float, recorded: bool) -> None:
        for stage, ms in stages.items():
            self.stages[stage].append(ms)
        self.stages[TOTAL].append(total)
        self.recorded += recorded

    def freeze(self, label: str, start: datetime, end: datetime, target: float) -> PerformanceBucket:
        totals = self.stages.get(TOTAL, array("d"))
        return PerformanceBucket(label=label, start=start, end=end, requests=len(totals),
                                 errors=self.errors, stages=stage_summaries(self.stages),
                                 sla=sla_summary(totals, target, recorded=self.recorded))


async def analyze_performance(store: AuditStore, *, granularity: Granularity, start: datetime,
                              end: datetime, target_latency_ms: float) -> PerformanceTrend:
    """Per-bucket latency percentiles and SLA compliance of the retrievals in ``[start, end)``."""
    bounds = bucket_bounds(granularity, start, end)
    starts = [s for _, s, _ in bounds]
    buckets = [_Bucket() for _ in bounds]
    overall = _Bucket()
    async for record in period_records(store, start, end):
        if record.event_type is not AuditEventType.RETRIEVAL:
            continue
        try:
            payload = record.payload
        except ValueError:
            continue
        if payload is None:
            continue
        bucket = buckets[bisect_right(starts, record.occurred_at) - 1]
        if payload.get("outcome", "ok") != "ok":
            bucket.errors += 1
            overall.errors += 1
            continue
        stages, total, recorded = retrieval_timing(payload)
        if total is not None:
            bucket.add(stages, total, recorded)
            overall.add(stages, total, recorded)
    return PerformanceTrend(
        granularity=granularity, start=start, end=end, target_latency_ms=target_latency_ms,
        buckets=tuple(b.freeze(label, s, e, target_latency_ms)
                      for b, (label, s, e) in zip(buckets, bounds, strict=True)),
        overall=overall.freeze("overall", start, end, target_latency_ms))


def format_table(trend: PerformanceTrend) -> str:
    """One row per bucket and stage (p50/p95/p99 in ms); SLA compliance on each ``total`` row."""
    head = ("PERIOD", "STAGE", "N", "P50 MS", "P95 MS", "P99 MS", "SLA MET")
    rows: list[tuple[str, ...]] = []
    for bucket in (*trend.buckets, trend.overall):
        if not bucket.stages:
            rows.append((bucket.label, "-", "0", "-", "-", "-",
                         f"n/a ({bucket.errors} failed)" if bucket.errors else "n/a"))
            continue
        for stage, s in bucket.stages.items():
            sla = ""
            if stage == TOTAL and bucket.sla.compliance_rate is not None:
                sla = f"{100 * bucket.sla.compliance_rate:.2f} %"
                sla += f" ({bucket.errors} failed)" if bucket.errors else ""
            rows.append((bucket.label, stage, str(s.count), f"{s.p50:.1f}", f"{s.p95:.1f}",
                         f"{s.p99:.1f}", sla))
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(row, widths, strict=True))).rstrip() for row in (head, *rows)]
    lines.append(f"SLA target: {trend.target_latency_ms:.0f} ms; "
                 f"{trend.overall.sla.measured_as}")
    return "\n".join(lines)


def render_chart(trend: PerformanceTrend, path: str | Path) -> Path:
    """Write a PNG: p50, p95 and p99 per stage over the buckets, and SLA compliance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [b.label for b in trend.buckets]
    x = list(range(len(labels)))
    stages = list(dict.fromkeys(s for b in trend.buckets for s in b.stages))
    figure, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    for ax, pct in zip(axes[:3], ("p50", "p95", "p99"), strict=True):
        for stage in stages:
            values = [getattr(b.stages[stage], pct) if stage in b.stages else float("nan")
                      for b in trend.buckets]
            ax.plot(x, values, marker="o", markersize=3, label=stage)
        ax.axhline(trend.target_latency_ms, color="red", linestyle="--", linewidth=1)
        ax.set_ylabel(f"{pct} ms")
        if stages:
            ax.legend(fontsize=7, ncol=len(stages))
    rates = [100 * b.sla.compliance_rate if b.sla.compliance_rate is not None else float("nan")
             for b in trend.buckets]
    axes[3].plot(x, rates, marker="o", color="black")
    axes[3].set_ylim(0, 105)
    axes[3].set_ylabel(f"SLA met % (≤ {trend.target_latency_ms:.0f} ms)")
    step = max(1, len(labels) // 15)
    axes[3].set_xticks(x[::step], labels[::step], rotation=45, fontsize=8)
    figure.suptitle(f"Retrieval latency, {trend.granularity}, {trend.start:%Y-%m-%d} to "
                    f"{trend.end:%Y-%m-%d} (UTC)")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return target


async def performance_report(config: PipelineConfig, *, granularity: Granularity,
                             start: datetime | None = None, end: datetime | None = None,
                             now: datetime | None = None,
                             output: str | Path | None = None) -> tuple[PerformanceTrend, Path]:
    """Analyse ``[start, end)`` (default: :func:`default_range`) and write the PNG chart to
    ``output`` (default ``<data_dir>/reports/performance/performance-<period>-<from>-<to>.png``)."""
    from ..manager import ComplianceManager

    if granularity not in GRANULARITIES:
        raise InputError(f"period {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    first, last = default_range(granularity, now or datetime.now(UTC))
    start, end = start or first, end or last
    async with ComplianceManager(config) as cm:
        trend = await analyze_performance(cm.store, granularity=granularity, start=start, end=end,
                                          target_latency_ms=config.pipeline.target_latency_ms)
    path = Path(output) if output is not None else (
        Path(config.data_dir) / "reports" / "performance"
        / f"performance-{granularity}-{start:%Y%m%d}-{end:%Y%m%d}.png")
    return trend, await asyncio.to_thread(render_chart, trend, path)
