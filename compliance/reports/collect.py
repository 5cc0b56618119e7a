"""Building a :class:`ComplianceReport`: verify the chain, then one streaming pass over the
period's events.

Reads go through the public :class:`~compliance.audit.AuditStore` API only: the first and last
``seq`` whose ``occurred_at`` falls in ``[start, end)`` bound a ``seq`` range, which is
streamed in batches and filtered on time again (``occurred_at`` is set by the caller, so it
need not grow with ``seq``). Memory grows with the number of retrievals (eight bytes per stage
sample), not with the number of events.

Payloads are read defensively: the report must still be produced from a log written by
other versions, by other modules (retention, erasure) whose fields it does not know, and from
a log that failed verification. Unknown fields are listed, not interpreted; a payload that
cannot be read is counted in ``unreadable_payloads``.

Example::

    async with AuditStore(url) as store:
        report = await build_compliance_report(store, start=oct_1, end=nov_1, period="2026-10",
                                               target_latency_ms=80.0)
"""

from __future__ import annotations

import json
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, date, datetime
from datetime import time as clock
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from advanced_rag.errors import InputError
from advanced_rag.telemetry import summarise

from ..audit.checkpoints import PublicKeyLike
from ..audit.models import AuditEventType, AuditRecord
from ..audit.store import AuditStore
from ..audit.verify import verify_chain
from ..errors import AuditIntegrityError
from .model import (
    HISTOGRAM_BINS,
    AccessDenials,
    ActionEntry,
    ActionLog,
    ChainFailure,
    ChainStatus,
    CheckpointInfo,
    ComplianceReport,
    ConfigInUse,
    Distribution,
    DriftEntry,
    ModelInUse,
    QualitySummary,
    RetrievalSummary,
    SlaSummary,
)
from .monthly import last_full_month, month_bounds

__all__ = ["build_compliance_report", "check_chain", "period_records", "resolve_period",
           "retrieval_timing", "sla_summary", "stage_summaries"]

NONE_LABEL = "(none)"
"""How a missing tenant is shown in counts by tenant."""
TOTAL = "total"
_DETAIL_CHARS = 160
_DOCUMENT_KINDS = {
    AuditEventType.DOCUMENT_INGESTED: "ingested", AuditEventType.DOCUMENT_UPDATED: "updated",
    AuditEventType.DOCUMENT_SKIPPED: "skipped", AuditEventType.DOCUMENT_FAILED: "failed",
    AuditEventType.DOCUMENT_DELETED: "deleted"}
_ACTIONS = {AuditEventType.RETENTION: "retention", AuditEventType.LEGAL_HOLD: "legal_holds",
            AuditEventType.ERASURE: "erasures"}


async def period_records(store: AuditStore, start: datetime,
                         end: datetime) -> AsyncIterator[AuditRecord]:
    """Every record with ``start <= occurred_at < end``, in ``seq`` order, streamed."""
    first = await store.query(start_time=start, end_time=end, limit=1)
    if not first:
        return
    last = await store.query(start_time=start, end_time=end, limit=1, descending=True)
    async for record in store.iter_records(first[0].seq, last[0].seq):
        if start <= record.occurred_at < end:
            yield record


def _moment(name: str, value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise InputError(f"{name} {value.isoformat()!r} is naive; give a timezone (UTC)")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, clock(0), tzinfo=UTC)
    raise InputError(f"{name} must be a date or a timezone-aware datetime, got {value!r}")


def resolve_period(start_date: date | datetime | None, end_date: date | datetime | None,
                   period: str | None = None, *,
                   now: datetime | None = None) -> tuple[datetime, datetime, str]:
    """``[start, end)`` in UTC and its label. A ``date`` means midnight UTC; both ``None``:
    ``period`` (``"2026-10"``) or, without it, the last full calendar month before ``now``."""
    if start_date is None and end_date is None:
        label = period or last_full_month(now or datetime.now(UTC))
        start, end = month_bounds(label)
        return start, end, label
    if start_date is None or end_date is None:
        raise InputError("give both start_date and end_date (or neither: the last full month)")
    start, end = _moment("start_date", start_date), _moment("end_date", end_date)
    if end <= start:
        raise InputError(f"end_date {end.isoformat()} must be after start_date {start.isoformat()}")
    return start, end, period or f"{start:%Y-%m-%d}..{end:%Y-%m-%d}"


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))


def retrieval_timing(payload: Mapping[str, Any]) -> tuple[dict[str, float], float | None, bool]:
    """A retrieval payload's per-stage latencies (ms), its total, and whether that total was
    recorded (``True``) or is the sum of the recorded stages (``False``).

    Successful retrievals record ``latency_ms`` as ``{stage: ms}``; failed ones as one number.
    """
    latency = payload.get("latency_ms")
    if _number(latency):
        return {}, float(latency), True
    if not isinstance(latency, Mapping):
        return {}, None, False
    stages = {str(k): float(v) for k, v in latency.items() if k != TOTAL and _number(v)}
    if _number(latency.get(TOTAL)):
        return stages, float(latency[TOTAL]), True
    return stages, (sum(stages.values()) if stages else None), False


def stage_summaries(samples: Mapping[str, array[float]]) -> dict[str, Any]:
    """p50/p95/p99 (numpy linear interpolation, as the live telemetry) of each stage with
    samples; ``total`` last."""
    order = sorted((k for k in samples if k != TOTAL), key=str) + ([TOTAL] if TOTAL in samples else [])
    return {stage: summarise(np.frombuffer(samples[stage], dtype=np.float64).tolist())
            for stage in order if len(samples[stage])}


def sla_summary(totals: array[float], target_ms: float, *, recorded: int) -> SlaSummary:
    """SLA compliance of ``totals``; ``recorded`` of them were recorded as totals, the rest are
    sums of recorded stages."""
    values = np.frombuffer(totals, dtype=np.float64)
    met = int((values <= target_ms).sum())
    if recorded == len(values):
        measured = "the total latency each retrieval event recorded"
    else:
        measured = ("the sum of the stages each retrieval event recorded (embed, search, rerank, "
                    "risk): the audit commit and call overhead are not in the event, so this is "
                    "a lower bound of the latency callers saw")
    return SlaSummary(target_latency_ms=target_ms, requests=int(values.size), met=met,
                      compliance_rate=met / values.size if values.size else None,
                      measured_as=measured)


def _distribution(values: list[float]) -> Distribution | None:
    if not values:
        return None
    data = np.asarray(values, dtype=np.float64)
    p10, p50, p90 = np.percentile(data, [10, 50, 90])
    counts, _ = np.histogram(np.clip(data, 0.0, 1.0), bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    return Distribution(count=int(data.size), mean=float(data.mean()), min=float(data.min()),
                        p10=float(p10), p50=float(p50), p90=float(p90), max=float(data.max()),
                        histogram=tuple(int(c) for c in counts))


def _short(value: Any) -> Any:
    """A payload value as a report shows it: scalars as they are (long text cut), small
    structures as they are, large ones described."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= _DETAIL_CHARS else value[:_DETAIL_CHARS] + "…"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    if len(text) <= _DETAIL_CHARS:
        return value
    if isinstance(value, list):
        return f"<list of {len(value)}>"
    if isinstance(value, dict):
        return f"<object with {len(value)} keys: {', '.join(sorted(map(str, value))[:8])}>"
    return f"<{type(value).__name__}>"


def _counts(counter: Counter[str]) -> dict[str, int]:
    """Most frequent first, then by name: stable across runs."""
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


class _Tally:
    """Running totals of one pass over the period's events."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.total = 0
        self.by_type: Counter[str] = Counter()
        self.by_tenant: Counter[str] = Counter()
        self.by_actor: Counter[str] = Counter()
        self.per_day: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.redacted = 0
        self.unreadable = 0
        self.retrievals = 0
        self.retrieval_errors = 0
        self.without_latency = 0
        self.retrieval_tenants: Counter[str] = Counter()
        self.stages: defaultdict[str, array[float]] = defaultdict(lambda: array("d"))
        self.totals_recorded = 0
        self.answers = 0
        self.decisions: Counter[str] = Counter()
        self.scored = 0
        self.risk_unknown = 0
        self.faithfulness: list[float] = []
        self.risk: list[float] = []
        self.drift: list[DriftEntry] = []
        self.actions: dict[str, list[ActionEntry]] = {name: [] for name in _ACTIONS.values()}
        self.action_counts: Counter[str] = Counter()
        self.action_actors: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.models: dict[tuple[str, str, str | None], list[Any]] = {}
        self.configs: dict[str, list[Any]] = {}
        self.denied = 0
        self.denied_actor: Counter[str] = Counter()
        self.denied_tenant: Counter[str] = Counter()
        self.denied_operation: Counter[str] = Counter()

    def add(self, record: AuditRecord) -> None:
        kind = record.event_type
        self.total += 1
        self.by_type[kind.value] += 1
        self.by_tenant[record.tenant or NONE_LABEL] += 1
        self.by_actor[record.actor] += 1
        self.per_day[record.occurred_at.astimezone(UTC).date().isoformat()][kind.value] += 1
        if kind is AuditEventType.RETRIEVAL:
            self.retrievals += 1
            self.retrieval_tenants[record.tenant or NONE_LABEL] += 1
        elif kind is AuditEventType.GENERATION:
            self.answers += 1
        elif kind is AuditEventType.SCORING:
            self.scored += 1
        elif kind is AuditEventType.ACCESS_DENIED:
            self.denied += 1
            self.denied_actor[record.actor] += 1
        elif kind in _ACTIONS:
            self.action_counts[_ACTIONS[kind]] += 1
            self.action_actors[_ACTIONS[kind]][record.actor] += 1
        try:
            payload = record.payload
        except (ValueError, TypeError):
            self.unreadable += 1
            payload = None
        else:
            if payload is None:
                self.redacted += 1
        if kind in _ACTIONS:  # listed even when redacted: that it happened is the record
            entries = self.actions[_ACTIONS[kind]]
            if len(entries) < self.max_entries:
                details = None if payload is None else {k: _short(v) for k, v in payload.items()}
                entries.append(ActionEntry(seq=record.seq, event_id=record.event_id,
                                           occurred_at=record.occurred_at, actor=record.actor,
                                           tenant=record.tenant, details=details))
        if payload is None:
            if kind is AuditEventType.RETRIEVAL:
                self.without_latency += 1
            elif kind is AuditEventType.ACCESS_DENIED:
                self.denied_tenant[record.tenant or NONE_LABEL] += 1
                self.denied_operation[NONE_LABEL] += 1
            return
        try:
            self._payload(record, kind, payload)
        except (KeyError, TypeError, ValueError, AttributeError):
            self.unreadable += 1

    def _payload(self, record: AuditRecord, kind: AuditEventType, payload: Mapping[str, Any]) -> None:
        if kind is AuditEventType.RETRIEVAL:
            if payload.get("outcome", "ok") != "ok":
                self.retrieval_errors += 1
                return
            stages, total, recorded = retrieval_timing(payload)
            if total is None:
                self.without_latency += 1
                return
            for stage, ms in stages.items():
                self.stages[stage].append(ms)
            self.stages[TOTAL].append(total)
            self.totals_recorded += recorded
        elif kind is AuditEventType.GENERATION:
            self.decisions[str(payload.get("decision") or "unknown")] += 1
        elif kind is AuditEventType.SCORING:
            faithfulness, risk = payload.get("faithfulness_score"), payload.get("hallucination_risk")
            if _number(faithfulness):
                self.faithfulness.append(float(faithfulness))
            if _number(risk):
                self.risk.append(float(risk))
            else:
                self.risk_unknown += 1
        elif kind is AuditEventType.DRIFT_REPORT:
            body = payload.get("report")
            body = body if isinstance(body, Mapping) else {}
            magnitude = body.get("drift_magnitude")
            detected = body.get("drift_detected")
            self.drift.append(DriftEntry(
                seq=record.seq, occurred_at=record.occurred_at,
                period=_text(payload.get("period")), reference=_text(payload.get("reference")),
                tenant=record.tenant, status=_text(body.get("status")),
                drift_detected=detected if isinstance(detected, bool) else None,
                magnitude=float(magnitude) if _number(magnitude) else None,
                report_sha256=_text(payload.get("report_sha256"))))
        elif kind is AuditEventType.ACCESS_DENIED:
            asked = payload.get("requested_tenant", record.tenant)
            self.denied_tenant[str(asked) if asked else NONE_LABEL] += 1
            self.denied_operation[str(payload.get("operation") or NONE_LABEL)] += 1
        elif kind is AuditEventType.MODEL_LOADED:
            self._seen(self.models, (str(payload.get("role") or "model"),
                                     str(payload.get("model") or "unknown"),
                                     _text(payload.get("weights_sha256"))), record.occurred_at)
        elif kind is AuditEventType.CONFIG_LOADED and isinstance(payload.get("config_sha256"), str):
            self._seen(self.configs, payload["config_sha256"], record.occurred_at)

    @staticmethod
    def _seen(table: dict[Any, list[Any]], key: Any, when: datetime) -> None:
        entry = table.setdefault(key, [0, when, when])
        entry[0] += 1
        entry[1], entry[2] = min(entry[1], when), max(entry[2], when)

    def action_log(self, name: str) -> ActionLog:
        return ActionLog(count=self.action_counts[name],
                         by_actor=_counts(self.action_actors[name]),
                         entries=tuple(self.actions[name]))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


async def check_chain(store: AuditStore, *, anchor: str | Path | None = None,
                      public_key: PublicKeyLike | None = None) -> ChainStatus:
    """Verify the whole chain; a failure is returned (``verified=False``), not raised.

    A configured anchor file that does not exist yet is not a failure while no checkpoint has
    been written (nothing could have been anchored); once one exists, a missing file is.
    """
    head = await store.head()
    began = time.perf_counter()
    when = datetime.now(UTC)
    anchor_path = Path(anchor) if anchor is not None else None
    use_anchor = anchor_path
    anchor_status = "not configured: signed heads are only compared with the database's own"
    if anchor_path is not None and not anchor_path.exists() and not await store.checkpoints(start=1):
        use_anchor = None
        anchor_status = f"{anchor_path}: no file yet (no checkpoint has been written)"
    try:
        result = await verify_chain(store, anchor=use_anchor, public_key=public_key)
    except AuditIntegrityError as exc:
        return ChainStatus(
            verified=False, verified_at=when, head_seq=head.seq, head_hash=head.entry_hash,
            events_checked=None, checkpoints_checked=0, signatures_checked=0,
            last_checkpoint=None, anchor=None if anchor_path is None else str(anchor_path),
            anchor_status=anchor_status if use_anchor is None else f"{anchor_path}: not confirmed",
            redacted_events=0, seconds=time.perf_counter() - began,
            failure=ChainFailure(seq=exc.seq, reason=exc.reason, expected=exc.expected,
                                 actual=exc.actual))
    if use_anchor is not None:
        anchor_status = (f"{use_anchor}: {result.anchor_lines_checked} anchored head(s) matched the "
                         "chain")
    cp = result.last_valid_checkpoint
    return ChainStatus(
        verified=True, verified_at=when, head_seq=result.last_seq or 0, head_hash=result.head_hash,
        events_checked=result.events_checked, checkpoints_checked=result.checkpoints_checked,
        signatures_checked=result.signatures_checked,
        last_checkpoint=None if cp is None else CheckpointInfo(cp.seq, cp.head_hash,
                                                               cp.created_at, cp.key_id),
        anchor=None if anchor_path is None else str(anchor_path), anchor_status=anchor_status,
        redacted_events=result.redacted_events, seconds=result.seconds, failure=None)


async def _before(store: AuditStore, start: datetime) -> tuple[list[ModelInUse], list[ConfigInUse]]:
    """The last config, and the last model per role, loaded before ``start``: what a process
    started earlier was still serving with."""
    configs = []
    for record in await store.query(event_type=AuditEventType.CONFIG_LOADED, end_time=start,
                                    limit=1, descending=True):
        payload = record.payload or {}
        if isinstance(payload.get("config_sha256"), str):
            configs.append(ConfigInUse(payload["config_sha256"], 1, record.occurred_at,
                                       record.occurred_at, before_period=True))
    models: dict[str, ModelInUse] = {}
    for record in await store.query(event_type=AuditEventType.MODEL_LOADED, end_time=start,
                                    limit=50, descending=True):
        payload = record.payload or {}
        role = str(payload.get("role") or "model")
        if role not in models:
            models[role] = ModelInUse(role, str(payload.get("model") or "unknown"),
                                      _text(payload.get("weights_sha256")), 1,
                                      record.occurred_at, record.occurred_at, before_period=True)
    return list(models.values()), configs


def _notes(tally: _Tally, chain: ChainStatus, end: datetime, generated: datetime) -> list[str]:
    notes = []
    if not chain.verified:
        notes.append("THE AUDIT CHAIN FAILED VERIFICATION: the log has been altered, so every "
                     "figure in this report may be wrong.")
    if end > generated:
        notes.append("The period had not ended when this report was generated: it is partial.")
    if tally.redacted:
        notes.append(f"{tally.redacted} event(s) of the period had their payload erased by "
                     "retention: they are counted, but contribute no latency or quality figures.")
    if tally.unreadable:
        notes.append(f"{tally.unreadable} payload(s) could not be read.")
    if chain.verified and chain.checkpoints_checked and not chain.signatures_checked:
        notes.append("Checkpoint signatures were not checked: no anchor file and no pinned "
                     "public key named a key to check them with.")
    return notes


async def build_compliance_report(store: AuditStore, *, start: datetime, end: datetime,
                                  period: str | None = None, target_latency_ms: float = 80.0,
                                  anchor: str | Path | None = None,
                                  public_key: PublicKeyLike | None = None,
                                  max_entries: int = 200) -> ComplianceReport:
    """The compliance report of ``[start, end)`` (timezone-aware) from an open store.

    ``max_entries`` caps how many retention, legal-hold and erasure events are listed per kind
    (all are counted). If the chain fails verification and the period's events then cannot
    even be read, the report says so instead of raising.
    """
    chain = await check_chain(store, anchor=anchor, public_key=public_key)
    tally = _Tally(max_entries)
    extra: list[str] = []
    try:
        async for record in period_records(store, start, end):
            tally.add(record)
    except Exception as exc:  # a tampered row can be unreadable; the verdict is already known
        if chain.verified:
            raise
        extra.append(f"Reading the period's events stopped: {type(exc).__name__}: {exc}")
    models_before, configs_before = await _before(store, start)
    loaded_roles = {role for role, _, _ in tally.models}
    models = [m for m in models_before if m.role not in loaded_roles] + [
        ModelInUse(role, model, sha, n, first, last, before_period=False)
        for (role, model, sha), (n, first, last) in sorted(tally.models.items(), key=str)]
    configs = [c for c in configs_before if c.sha256 not in tally.configs] + [
        ConfigInUse(sha, n, first, last, before_period=False)
        for sha, (n, first, last) in sorted(tally.configs.items(), key=lambda kv: kv[1][1])]
    generated = datetime.now(UTC)
    totals = tally.stages.get(TOTAL, array("d"))
    label = period or f"{start.astimezone(UTC):%Y-%m-%d}..{end.astimezone(UTC):%Y-%m-%d}"
    return ComplianceReport(
        period=label, start=start.astimezone(UTC), end=end.astimezone(UTC), generated_at=generated,
        chain=chain, total_events=tally.total,
        version_updates=tally.by_type[AuditEventType.DOCUMENT_UPDATED.value],
        events_by_type=_counts(tally.by_type), events_by_tenant=_counts(tally.by_tenant),
        events_by_actor=_counts(tally.by_actor),
        events_per_day={day: _counts(c) for day, c in sorted(tally.per_day.items())},
        redacted_payloads=tally.redacted, unreadable_payloads=tally.unreadable,
        documents={name: tally.by_type[kind.value] for kind, name in _DOCUMENT_KINDS.items()},
        retrieval=RetrievalSummary(
            requests=tally.retrievals, ok=tally.retrievals - tally.retrieval_errors,
            errors=tally.retrieval_errors, without_latency=tally.without_latency,
            by_tenant=_counts(tally.retrieval_tenants), stages=stage_summaries(tally.stages),
            sla=sla_summary(totals, target_latency_ms, recorded=tally.totals_recorded)),
        quality=QualitySummary(
            answers=tally.answers, decisions=_counts(tally.decisions), scored=tally.scored,
            risk_unknown=tally.risk_unknown, faithfulness=_distribution(tally.faithfulness),
            hallucination_risk=_distribution(tally.risk)),
        drift_reports=tuple(sorted(tally.drift, key=lambda d: (d.occurred_at, d.seq))),
        retention=tally.action_log("retention"),
        legal_holds=tally.action_log("legal_holds"), erasures=tally.action_log("erasures"),
        models=tuple(models), configs=tuple(configs),
        access_denied=AccessDenials(count=tally.denied, by_actor=_counts(tally.denied_actor),
                                    by_tenant=_counts(tally.denied_tenant),
                                    by_operation=_counts(tally.denied_operation)),
        notes=tuple(_notes(tally, chain, end, generated) + extra))
