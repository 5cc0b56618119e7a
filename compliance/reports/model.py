"""The compliance report's value types: frozen, typed, and plain data through :meth:`to_dict`.

Everything a report states is here; how it is computed is in ``collect.py``, how it is shown
in ``render.py``. Every type also answers the seed's dictionary-style access
(``report["total_events"]``). Nothing measured is ``None`` only when there was nothing to
measure (no scored answers: ``quality.faithfulness is None``), never NaN.

Example::

    report = await cm.generate_compliance_report(start_date=datetime(2026, 10, 1, tzinfo=UTC),
                                                 end_date=datetime(2026, 11, 1, tzinfo=UTC))
    report.chain.verified, report.total_events, report["version_updates"]
    report.retrieval.stages["search"].p95, report.retrieval.sla.compliance_rate
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from advanced_rag.telemetry import StageLatency

__all__ = [
    "AccessDenials",
    "ActionEntry",
    "ActionLog",
    "ChainFailure",
    "ChainStatus",
    "CheckpointInfo",
    "ComplianceReport",
    "ConfigInUse",
    "Distribution",
    "DriftEntry",
    "ModelInUse",
    "QualitySummary",
    "RetrievalSummary",
    "SlaSummary",
    "StageLatency",
    "plain",
]

HISTOGRAM_BINS = 10
"""Score histograms use 10 equal bins over [0, 1]."""


def plain(value: Any) -> Any:
    """JSON-ready data: dataclasses and mappings as dicts, tuples as lists, datetimes ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


class _Item:
    """``obj["field"]`` as well as ``obj.field`` (the seed's style)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or key.startswith("_") or not hasattr(self, key):
            raise KeyError(key)
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data."""
        data: dict[str, Any] = plain(self)
        return data


@dataclass(frozen=True, slots=True)
class CheckpointInfo(_Item):
    """The last signed checkpoint the verification matched against the chain."""

    seq: int
    head_hash: str
    created_at: datetime
    key_id: str


@dataclass(frozen=True, slots=True)
class ChainFailure(_Item):
    """Why verification failed: the first bad sequence number and what was found there."""

    seq: int
    reason: str
    expected: str | None
    actual: str | None


@dataclass(frozen=True, slots=True)
class ChainStatus(_Item):
    """The whole audit chain as verified when the report was generated (not only the period:
    one altered event anywhere makes every figure derived from the log suspect).

    ``events_checked`` is ``None`` when verification failed (``failure`` says where).
    ``anchor_status`` says whether signed heads were compared with the external anchor file.
    """

    verified: bool
    verified_at: datetime
    head_seq: int
    head_hash: str
    events_checked: int | None
    checkpoints_checked: int
    signatures_checked: int
    last_checkpoint: CheckpointInfo | None
    anchor: str | None
    anchor_status: str
    redacted_events: int
    seconds: float
    failure: ChainFailure | None


@dataclass(frozen=True, slots=True)
class SlaSummary(_Item):
    """Share of successful retrievals whose total latency met ``target_latency_ms``."""

    target_latency_ms: float
    requests: int
    met: int
    compliance_rate: float | None
    measured_as: str


@dataclass(frozen=True, slots=True)
class RetrievalSummary(_Item):
    """Retrieval volume and latency (ms) per recorded stage, plus ``total`` per request."""

    requests: int
    ok: int
    errors: int
    without_latency: int
    by_tenant: Mapping[str, int]
    stages: Mapping[str, StageLatency]
    sla: SlaSummary


@dataclass(frozen=True, slots=True)
class Distribution(_Item):
    """A score's distribution; ``histogram`` counts values in 10 equal bins over [0, 1]."""

    count: int
    mean: float
    min: float
    p10: float
    p50: float
    p90: float
    max: float
    histogram: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class QualitySummary(_Item):
    """Answers (``generation`` events) by risk-policy decision, and the judge's scores
    (``scoring`` events). ``risk_unknown`` counts scorings whose risk was not computed."""

    answers: int
    decisions: Mapping[str, int]
    scored: int
    risk_unknown: int
    faithfulness: Distribution | None
    hallucination_risk: Distribution | None

    @property
    def flagged(self) -> int:
        return self.decisions.get("flagged", 0)

    @property
    def withheld(self) -> int:
        return self.decisions.get("withheld", 0)

    @property
    def refused(self) -> int:
        return self.decisions.get("refused", 0)


@dataclass(frozen=True, slots=True)
class DriftEntry(_Item):
    """One ``drift_report`` event of the period."""

    seq: int
    occurred_at: datetime
    period: str | None
    reference: str | None
    tenant: str | None
    status: str | None
    drift_detected: bool | None
    magnitude: float | None
    report_sha256: str | None


@dataclass(frozen=True, slots=True)
class ActionEntry(_Item):
    """One retention, legal-hold or erasure event. ``details`` holds the payload's top-level
    fields (long or nested values shortened), whatever fields the event has."""

    seq: int
    event_id: str
    occurred_at: datetime
    actor: str
    tenant: str | None
    details: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class ActionLog(_Item):
    """Events of one kind: how many, by actor, and the first ``len(entries)`` of them."""

    count: int
    by_actor: Mapping[str, int]
    entries: tuple[ActionEntry, ...]

    @property
    def truncated(self) -> bool:
        return self.count > len(self.entries)


@dataclass(frozen=True, slots=True)
class ModelInUse(_Item):
    """A model loaded in the period (or the last one per role loaded before it)."""

    role: str
    model: str
    sha256: str | None
    loads: int
    first_seen: datetime
    last_seen: datetime
    before_period: bool


@dataclass(frozen=True, slots=True)
class ConfigInUse(_Item):
    """A configuration loaded in the period (or the last one loaded before it), by digest."""

    sha256: str
    loads: int
    first_seen: datetime
    last_seen: datetime
    before_period: bool


@dataclass(frozen=True, slots=True)
class AccessDenials(_Item):
    """Refused calls: how many, by actor, by requested tenant and by operation."""

    count: int
    by_actor: Mapping[str, int]
    by_tenant: Mapping[str, int]
    by_operation: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class ComplianceReport(_Item):
    """What the audit log says about ``[start, end)``, and whether the log itself is intact.

    ``total_events`` and ``version_updates`` (``document_updated`` events) are the seed's
    names. ``events_per_day`` maps ``YYYY-MM-DD`` (UTC) to counts by event type.
    ``redacted_payloads`` counts events whose payload retention erased (they are counted,
    but contribute no figures); ``unreadable_payloads`` those whose payload could not be read.
    """

    period: str
    start: datetime
    end: datetime
    generated_at: datetime
    chain: ChainStatus
    total_events: int
    version_updates: int
    events_by_type: Mapping[str, int]
    events_by_tenant: Mapping[str, int]
    events_by_actor: Mapping[str, int]
    events_per_day: Mapping[str, Mapping[str, int]]
    redacted_payloads: int
    unreadable_payloads: int
    documents: Mapping[str, int]
    retrieval: RetrievalSummary
    quality: QualitySummary
    drift_reports: tuple[DriftEntry, ...]
    retention: ActionLog
    legal_holds: ActionLog
    erasures: ActionLog
    models: tuple[ModelInUse, ...]
    configs: tuple[ConfigInUse, ...]
    access_denied: AccessDenials
    notes: tuple[str, ...]
