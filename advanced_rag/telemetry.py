"""Per-stage latency accounting and SLA compliance.

:class:`LatencyRecorder` keeps a bounded window of recent samples per stage;
:meth:`LatencyRecorder.report` summarises them as a :class:`PerformanceReport`, which also
answers the seed's dictionary-style calls::

    report = rag.get_performance_report()
    report["stage_latencies"]["retrieve"]["p95"]
    report["sla_compliance"]["compliance_rate"]
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .types import _ItemAccess


@dataclass(frozen=True, slots=True)
class StageLatency(_ItemAccess):
    """Latency distribution of one stage, in milliseconds."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float
    max: float


@dataclass(frozen=True, slots=True)
class SlaCompliance(_ItemAccess):
    """Share of requests whose total latency met ``target_latency_ms``; ``None`` before any."""

    target_latency_ms: float
    requests: int
    met: int
    compliance_rate: float | None


@dataclass(frozen=True, slots=True)
class PerformanceReport(_ItemAccess):
    stage_latencies: Mapping[str, StageLatency]
    sla_compliance: SlaCompliance


def summarise(samples_ms: list[float] | deque[float]) -> StageLatency:
    """Count, mean and p50/p95/p99/max (linear interpolation, as numpy) of a sample list."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no samples")
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return StageLatency(count=int(values.size), mean=float(values.mean()), p50=float(p50),
                        p95=float(p95), p99=float(p99), max=float(values.max()))


class StageTimer:
    """Times the stages of one request: ``with timer.stage("embed"): ...``."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self.stage_ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.stage_ms[name] = self.stage_ms.get(name, 0.0) + (time.perf_counter() - began) * 1e3

    @property
    def total_ms(self) -> float:
        return (time.perf_counter() - self._start) * 1e3


class LatencyRecorder:
    """Bounded per-stage latency samples plus SLA accounting for whole requests."""

    def __init__(self, target_latency_ms: float, *, window: int = 10_000) -> None:
        self.target_latency_ms = target_latency_ms
        self._window = window
        self._stages: dict[str, deque[float]] = {}

    def record(self, stage_ms: Mapping[str, float], total_ms: float) -> None:
        for stage, ms in (*stage_ms.items(), ("total", total_ms)):
            self._stages.setdefault(stage, deque(maxlen=self._window)).append(ms)

    def report(self) -> PerformanceReport:
        totals = self._stages.get("total", deque())
        met = sum(1 for ms in totals if ms <= self.target_latency_ms)
        return PerformanceReport(
            stage_latencies={stage: summarise(samples) for stage, samples in self._stages.items()},
            sla_compliance=SlaCompliance(
                target_latency_ms=self.target_latency_ms,
                requests=len(totals),
                met=met,
                compliance_rate=met / len(totals) if totals else None,
            ),
        )
