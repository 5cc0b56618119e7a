"""The retention run: read each record class, plan (policy.py), record the plan, apply it,
record the outcome. The scheduler's daily ``retention`` job is :func:`scheduled_retention`.

Order of a run that applies (not ``dry_run``): a ``retention`` audit event with the plan
(counts, cut-offs, rules, the holds that kept records back; never the records themselves),
then the query log, drift snapshots, report files and documents, then the audit chain (prune
after verifying the prefix it deletes, then redact), then a ``retention`` outcome event linked
to the plan event. A class that fails does not stop the others; the run then raises
:class:`RetentionError` (its ``result`` holds the outcomes) after recording them. A dry run
reads only: it writes nothing, not even an audit event.

Example::

    result = await run_retention(load_config("config.yaml"), now=datetime.now(UTC),
                                 dry_run=True, actor="cli:alice")
    for c in result.plan.classes:
        print(c.record_class, c.action, c.selected, [h.hold_id for h in c.held])
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import SQLAlchemyError

from advanced_rag.config import PipelineConfig, RetentionRule
from advanced_rag.drift.store import DriftReferenceRow, DriftReportRow, DriftStore, QueryLogRow
from advanced_rag.errors import AdvancedRagError

from ..audit.models import AuditEvent, AuditEventRow, AuditEventType
from ..audit.pruning import PrunePoint
from ..audit.store import AuditStore
from ..audit.trail import AuditTrail
from ..audit.verify import verify_chain
from ..errors import RetentionError
from .holds import Hold, LegalHolds
from .policy import (
    AuditRow,
    ClassPlan,
    FileRow,
    RetentionPlan,
    RetentionPolicy,
    Row,
    cutoff_for,
    doc_ids_of,
    plan_audit_events,
    plan_rows,
    report_file_tenant,
)

if TYPE_CHECKING:
    from advanced_rag.pipeline import AdvancedRAGPipeline

__all__ = ["ClassOutcome", "RetentionResult", "RetentionTargets", "apply_policy",
           "report_roots", "run_retention", "scheduled_retention"]

log = logging.getLogger(__name__)
REPORT_SUFFIXES = (".json", ".md", ".html")
_BATCH = 500
_QUERY_LOG = QueryLogRow.__table__  # type: ignore[attr-defined]
_REFERENCES = DriftReferenceRow.__table__  # type: ignore[attr-defined]
_REPORTS = DriftReportRow.__table__  # type: ignore[attr-defined]
_EVENTS = AuditEventRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ClassOutcome:
    """What applying one class did: ``done`` records acted on, or the ``error`` that stopped
    it (records done before the error stay done)."""

    record_class: str
    action: str
    done: int
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"record_class": self.record_class, "action": self.action, "done": self.done,
                "error": self.error}


@dataclass(frozen=True)
class RetentionResult:
    """A retention run: its plan, whether it was applied, and per class what happened."""

    plan: RetentionPlan
    dry_run: bool
    outcomes: tuple[ClassOutcome, ...] = ()
    prune_point: PrunePoint | None = None
    plan_event_id: str | None = None
    outcome_event_id: str | None = None

    @property
    def ok(self) -> bool:
        return all(o.error is None for o in self.outcomes)

    def summary(self) -> dict[str, Any]:
        """Plain JSON for the scheduler's ``job_finished`` event and ``--json`` output."""
        done = {o.record_class: o for o in self.outcomes}
        classes = {}
        for c in self.plan.classes:
            outcome = done.get(c.record_class)
            classes[c.record_class] = {
                "action": c.action, "cutoff": c.cutoff.isoformat(), "selected": c.selected,
                "held": sum(h.records for h in c.held), "done": outcome.done if outcome else 0,
                "error": outcome.error if outcome else None}
        return {"status": "dry_run" if self.dry_run else ("applied" if self.ok else "failed"),
                "now": self.plan.now.isoformat(), "selected": self.plan.selected,
                "held": self.plan.held,
                "pruned_through": self.prune_point.through_seq if self.prune_point else None,
                "plan_event_id": self.plan_event_id, "classes": classes}


@dataclass
class RetentionTargets:
    """Where the record classes live, all open: the audit trail (its store holds the chain),
    the drift tables, the legal holds, the report folders, and the pipeline (only needed when
    a documents rule exists)."""

    trail: AuditTrail
    drift: DriftStore
    holds: LegalHolds
    report_roots: tuple[Path, ...]
    pipeline: AdvancedRAGPipeline | None = None
    anchor: str | None = None
    drift_reference: str | None = None


def report_roots(config: PipelineConfig) -> tuple[Path, ...]:
    """Where report files live: ``drift.report_dir`` (if set) and ``<data_dir>/reports``."""
    roots = [Path(config.data_dir) / "reports"]
    if config.drift.report_dir:
        roots.insert(0, Path(config.drift.report_dir))
    return tuple(dict.fromkeys(r.resolve() for r in roots))


# -- reading ------------------------------------------------------------------------------------


async def _audit_rows(store: AuditStore, cutoff: datetime, first: int,
                      want_docs: bool) -> list[AuditRow]:
    newest_old = await store.query(end_time=cutoff, descending=True, limit=1)
    if not newest_old:
        return []
    return [AuditRow(r.seq, r.occurred_at, r.actor, r.tenant,
                     doc_ids_of(r.payload) if want_docs else (), r.redacted)
            async for r in store.iter_records(first, newest_old[0].seq)]


def _sql_rows(engine: Engine, cutoff: datetime, subjects: bool) -> dict[str, list[Row]]:
    """Due rows of the query log and drift tables (with the retrieval's actor when subject
    holds need it)."""
    with engine.connect() as conn:
        log_rows = conn.execute(select(_QUERY_LOG.c.id, _QUERY_LOG.c.created_at,
                                       _QUERY_LOG.c.tenant, _QUERY_LOG.c.event_id).where(
            _QUERY_LOG.c.created_at < cutoff)).all()
        actors: dict[str, str] = {}
        ids = [r.event_id for r in log_rows] if subjects else []
        for start in range(0, len(ids), _BATCH):
            actors.update(conn.execute(select(_EVENTS.c.event_id, _EVENTS.c.actor).where(
                _EVENTS.c.event_id.in_(ids[start:start + _BATCH]))).tuples().all())
        references = conn.execute(select(_REFERENCES.c.name, _REFERENCES.c.created_at,
                                         _REFERENCES.c.tenant)).all()
        reports = conn.execute(select(_REPORTS.c.id, _REPORTS.c.created_at,
                                      _REPORTS.c.tenant)).all()
    return {
        "query_log": [Row(r.id, r.created_at, r.tenant, subject=actors.get(r.event_id))
                      for r in log_rows],
        "drift_reference": [Row(("drift_reference", r.name), r.created_at, r.tenant)
                            for r in references],
        "drift_report": [Row(("drift_report", r.id), r.created_at, r.tenant) for r in reports]}


def _report_files(roots: Sequence[Path]) -> list[FileRow]:
    seen: dict[Path, FileRow] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path.suffix.lower() in REPORT_SUFFIXES and path.is_file():
                modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                seen.setdefault(path.resolve(), FileRow(path.resolve(), modified))
    return sorted(seen.values(), key=lambda f: str(f.path))


async def _plan(targets: RetentionTargets, policy: RetentionPolicy, now: datetime,
                holds: list[Hold]) -> RetentionPlan:
    store = targets.trail.store
    settings = policy.settings
    point = await store.prune_point()
    first = point.through_seq + 1 if point else 1
    audit_rule = settings.audit_events
    want_docs = any(h.scope == "document" for h in holds)
    rows = await _audit_rows(store, cutoff_for(audit_rule, now), first, want_docs)
    classes = [plan_audit_events(rows, audit_rule, now=now, holds=holds,
                                 can_prune=store.signer is not None,
                                 pruned_through=point.through_seq if point else None)]

    subjects = any(h.scope == "subject" for h in holds)
    sql = await asyncio.to_thread(_sql_rows, targets.drift.engine,
                                  cutoff_for(settings.query_log, now), subjects)
    classes.append(plan_rows("query_log", "query_log", settings.query_log, sql["query_log"],
                             now=now, holds=holds))
    drift_rule = settings.drift_snapshots
    drift_cut = cutoff_for(drift_rule, now)
    due = {r.key[1] for r in sql["drift_reference"] if r.at < drift_cut}
    notes = [f"due: {targets.drift_reference!r}, the configured drift.reference (unless held); "
             "capture a new one for the weekly drift report"] \
        if targets.drift_reference in due else []
    classes.append(plan_rows("drift_snapshots", "drift_snapshots", drift_rule,
                             sql["drift_reference"] + sql["drift_report"], now=now,
                             holds=holds, notes=notes))
    files = await asyncio.to_thread(_report_files, targets.report_roots)
    classes.append(plan_rows(
        "report_files", "report_files", settings.report_files,
        [Row(f.path, f.modified, report_file_tenant(f.path)) for f in files], now=now,
        holds=holds, notes=[f"report folders: {', '.join(map(str, targets.report_roots))}"]))
    for label, rule in sorted(settings.documents.items()):
        classes.append(await _plan_documents(targets, label, rule, now, holds))
    return RetentionPlan(now, tuple(classes), tuple(holds))


async def _plan_documents(targets: RetentionTargets, label: str, rule: RetentionRule,
                          now: datetime, holds: list[Hold]) -> ClassPlan:
    pipeline = targets.pipeline
    if pipeline is None:
        raise RetentionError("a documents retention rule needs the pipeline (Milvus)")
    store = pipeline.store
    lister = getattr(store, "documents_created_before", None)
    if lister is None:
        raise RetentionError(f"the vector store {type(store).__name__} cannot list documents "
                             "by age, so retention.documents cannot be applied")
    cutoff = cutoff_for(rule, now)
    found = await lister(int(cutoff.timestamp()), classification=label)
    rows = [Row((d.tenant, d.doc_id), datetime.fromtimestamp(d.created_at, UTC), d.tenant,
                doc_id=d.doc_id) for d in found]
    return plan_rows(f"documents:{label}", f"documents.{label}", rule, rows, now=now,
                     holds=holds)


# -- applying -----------------------------------------------------------------------------------


def _delete_sql(engine: Engine, plan: ClassPlan) -> int:
    done = 0
    keys = list(plan.targets)
    with engine.connect() as conn:
        for start in range(0, len(keys), _BATCH):
            chunk = keys[start:start + _BATCH]
            with conn.begin():
                if plan.record_class == "query_log":
                    conn.execute(delete(_QUERY_LOG).where(_QUERY_LOG.c.id.in_(chunk)))
                else:
                    names = [k[1] for k in chunk if k[0] == "drift_reference"]
                    ids = [k[1] for k in chunk if k[0] == "drift_report"]
                    if names:
                        conn.execute(delete(_REFERENCES).where(_REFERENCES.c.name.in_(names)))
                    if ids:
                        conn.execute(delete(_REPORTS).where(_REPORTS.c.id.in_(ids)))
            done += len(chunk)
    return done


def _delete_files(paths: Sequence[Path]) -> int:
    for path in paths:
        path.unlink(missing_ok=True)
    return len(paths)


async def _apply_class(targets: RetentionTargets, plan: ClassPlan, actor: str,
                       request_id: str) -> tuple[int, PrunePoint | None]:
    if plan.record_class in ("query_log", "drift_snapshots"):
        return await asyncio.to_thread(_delete_sql, targets.drift.engine, plan), None
    if plan.record_class == "report_files":
        return await asyncio.to_thread(_delete_files, list(plan.targets)), None
    if plan.record_class.startswith("documents:"):
        assert targets.pipeline is not None
        by_tenant: dict[str, list[str]] = {}
        for tenant, doc_id in plan.targets:
            by_tenant.setdefault(tenant, []).append(doc_id)
        done = 0
        for tenant, doc_ids in by_tenant.items():
            for start in range(0, len(doc_ids), _BATCH):
                chunk = doc_ids[start:start + _BATCH]
                await targets.pipeline.delete_documents(chunk, tenant=tenant, actor=actor,
                                                        request_id=request_id)
                done += len(chunk)
        return done, None
    return await _apply_audit(targets, plan)


async def _apply_audit(targets: RetentionTargets, plan: ClassPlan) -> tuple[int, PrunePoint | None]:
    store = targets.trail.store
    point = None
    done = 0
    if plan.prune_through is not None:
        # Sign nothing unverified: the prefix about to go must verify first (against the
        # anchor file once one was written).
        written = bool(targets.anchor) and await asyncio.to_thread(
            Path(str(targets.anchor)).exists)
        anchor = targets.anchor if written else None
        await verify_chain(store, end=plan.prune_through, anchor=anchor)
        point = await store.prune(plan.prune_through)
        done += point.events_deleted or 0
    for seq in plan.targets:
        record = await store.get(seq)
        if record is not None and not record.redacted:
            await store.redact_payload(seq)
            done += 1
    return done, point


def _event(actor: str, payload: dict[str, Any], parent: str | None = None) -> AuditEvent:
    return AuditEvent(AuditEventType.RETENTION, actor, payload, parent_event_id=parent)


async def apply_policy(targets: RetentionTargets, policy: RetentionPolicy, *, now: datetime,
                       dry_run: bool = False, actor: str = "retention") -> RetentionResult:
    """Plan retention over ``targets`` at ``now`` and, unless ``dry_run``, apply and record it
    (the ``run_retention(store, policy, *, now, dry_run)`` shape, with open targets)."""
    if now.utcoffset() is None:
        raise RetentionError(f"now {now.isoformat()!r} is naive; give a timezone (UTC)")
    holds = await targets.holds.active()
    plan = await _plan(targets, policy, now, holds)
    if dry_run:
        return RetentionResult(plan, dry_run=True)
    trail = targets.trail
    payload = plan.to_dict()
    for entry in payload["classes"]:  # hold reasons are free text: masked like any other
        for held in entry["held"]:
            held["hold"] = trail.text(held["hold"])
    plan_event = _event(actor, {"phase": "plan", **payload})
    await trail.record([plan_event])
    outcomes: list[ClassOutcome] = []
    prune_point: PrunePoint | None = None
    ordered = sorted(plan.classes, key=lambda c: c.record_class == "audit_events")
    for item in ordered:
        if item.selected == 0:
            outcomes.append(ClassOutcome(item.record_class, item.action, 0))
            continue
        try:
            done, point = await _apply_class(targets, item, actor, f"retention-{plan_event.event_id}")
        except (AdvancedRagError, SQLAlchemyError, OSError) as exc:
            log.error("retention of %s failed: %s", item.record_class, exc)
            outcomes.append(ClassOutcome(item.record_class, item.action, 0,
                                         f"{type(exc).__name__}: {exc}"[:2000]))
            continue
        prune_point = point or prune_point
        outcomes.append(ClassOutcome(item.record_class, item.action, done))
    outcome_payload: dict[str, Any] = {
        "phase": "outcome", "now": now.isoformat(),
        "ok": all(o.error is None for o in outcomes),
        "classes": [o.to_dict() for o in outcomes]}
    if prune_point is not None:
        outcome_payload["prune_point"] = {
            "through_seq": prune_point.through_seq, "entry_hash": prune_point.entry_hash,
            "key_id": prune_point.key_id, "signed_at": prune_point.created_at.isoformat()}
    outcome_event = _event(actor, outcome_payload, parent=plan_event.event_id)
    await trail.record([outcome_event])
    result = RetentionResult(plan, False, tuple(outcomes), prune_point, plan_event.event_id,
                             outcome_event.event_id)
    if not result.ok:
        failed = ", ".join(f"{o.record_class} ({o.error})" for o in outcomes if o.error)
        error = RetentionError(f"retention failed for {failed}")
        error.result = result  # type: ignore[attr-defined]
        raise error
    return result


async def run_retention(config: PipelineConfig, *, now: datetime | None = None,
                        dry_run: bool = False, actor: str = "retention",
                        trail: AuditTrail | None = None,
                        pipeline: AdvancedRAGPipeline | None = None) -> RetentionResult:
    """Apply ``config.retention`` at ``now`` (default: the current time), opening what it
    needs: the audit store (or ``trail``, left open), the drift tables, the legal holds and,
    only when a documents rule exists, the pipeline (or ``pipeline``, left open).

    Example::

        result = await run_retention(config, now=datetime(2026, 11, 22, 2, tzinfo=UTC))
        result.summary()["classes"]["audit_events"]["done"]
    """
    moment = datetime.now(UTC) if now is None else now
    policy = RetentionPolicy(config.retention)
    own_trail = trail is None
    if trail is None:
        trail = AuditTrail.from_settings(config.audit.model_copy(update={"enabled": True}),
                                         data_dir=config.data_dir)
    own_pipeline = pipeline is None and bool(config.retention.documents)
    drift = DriftStore.from_config(config)
    holds: LegalHolds | None = None
    try:
        await trail.open()
        await drift.open()
        holds = await LegalHolds.open(config)
        if own_pipeline:
            from advanced_rag.pipeline import AdvancedRAGPipeline

            pipeline = await AdvancedRAGPipeline.from_config(config).open()
        targets = RetentionTargets(trail, drift, holds, report_roots(config), pipeline,
                                   config.audit.anchor, config.drift.reference)
        return await apply_policy(targets, policy, now=moment, dry_run=dry_run, actor=actor)
    finally:
        if own_pipeline and pipeline is not None:
            await pipeline.close()
        if holds is not None:
            await holds.close()
        await drift.close()
        if own_trail:
            await trail.close()


async def scheduled_retention(config: PipelineConfig, *, now: datetime) -> dict[str, Any]:
    """The scheduler's daily ``retention`` job: apply the policy at the scheduled time; its
    summary goes into the ``job_finished`` event (a failed class fails the job)."""
    result = await run_retention(config, now=now, actor="scheduler")
    return result.summary()
