"""Retention decisions as plain functions: which records of each class are due, which legal
holds keep some of them, and what the plan is. No I/O here (job.py reads and applies).

Record classes and what happens to a record older than its rule's ``keep_days``:

==================  =======================================  ==================================
class               records                                  action
==================  =======================================  ==================================
``audit_events``    the audit chain                          ``redact`` (payload → NULL, hashes
                                                             stay) or ``prune`` (delete the
                                                             oldest rows behind a signed prune
                                                             point)
``query_log``       the drift query log                      delete rows
``drift_snapshots`` ``drift_reference`` + ``drift_report``   delete rows
``report_files``    JSON/MD/HTML reports on disk             delete files
``documents:<cls>`` Milvus documents of one classification   delete (audited, per tenant)
==================  =======================================  ==================================

A record covered by an active legal hold (its tenant, document, subject — an audit event's
actor — or time) is never touched; the plan names each hold and how many records it kept.
Pruning removes a *prefix* of the chain, so it stops at the first held (or recent) event;
older, unheld events after that point are redacted instead, so their payloads still go.

Example::

    policy = RetentionPolicy(config.retention)
    plan = plan_audit_events(rows, policy.audit_events, now=now, holds=holds)
    plan.selected, [(h.hold_id, h.records) for h in plan.held]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from advanced_rag.config import RetentionRule, RetentionSettings

from ..errors import RetentionError
from .holds import Hold, covered

__all__ = ["AuditRow", "ClassPlan", "FileRow", "HeldBack", "RetentionPlan", "RetentionPolicy",
           "Row", "cutoff_for", "plan_audit_events", "plan_rows", "report_file_tenant"]


def cutoff_for(rule: RetentionRule, now: datetime) -> datetime:
    """Records strictly older than this are due (``now - keep_days``)."""
    if now.utcoffset() is None:
        raise RetentionError(f"now {now.isoformat()!r} is naive; give a timezone (UTC)")
    return now - timedelta(days=rule.keep_days)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The ``retention:`` settings, re-checked against the legal floor (a policy built
    without validation is refused here too).

    Example::

        policy = RetentionPolicy(config.retention)
        [name for name, _ in policy.rules()]   # ['audit_events', 'query_log', ...]
    """

    settings: RetentionSettings

    def __post_init__(self) -> None:
        audit = self.settings.audit_events
        if audit.keep_days < self.settings.legal_floor_days:
            raise RetentionError(f"retention.audit_events.keep_days {audit.keep_days} is below "
                                 f"the legal floor of {self.settings.legal_floor_days} days")

    @property
    def audit_events(self) -> RetentionRule:
        return self.settings.audit_events

    def rules(self) -> list[tuple[str, RetentionRule]]:
        """``(rule name under retention:, rule)`` for every record class, documents last."""
        s = self.settings
        out = [("audit_events", s.audit_events), ("query_log", s.query_log),
               ("drift_snapshots", s.drift_snapshots), ("report_files", s.report_files)]
        out += [(f"documents.{label}", rule) for label, rule in sorted(s.documents.items())]
        return out


@dataclass(frozen=True, slots=True)
class HeldBack:
    """How many due records one legal hold kept."""

    hold_id: str
    description: str
    records: int


@dataclass(frozen=True)
class ClassPlan:
    """What retention will do to one record class, and why.

    ``candidates`` are the records older than ``cutoff``; ``selected`` those the action applies
    to; ``held`` what legal holds kept (per hold); ``skipped`` what needs nothing (already
    redacted). For ``audit_events`` with ``prune``, ``prune_through`` is the last seq deleted
    and ``selected`` counts pruned plus redacted events (``redact_instead`` of them redacted
    because a held or recent event stops the prefix). ``targets`` (seqs, ids, names, paths or
    ``(tenant, doc_id)``) are what job.py applies; they never enter the audit log."""

    record_class: str
    rule: str
    action: str
    keep_days: int
    cutoff: datetime
    candidates: int
    selected: int
    held: tuple[HeldBack, ...] = ()
    skipped: int = 0
    notes: tuple[str, ...] = ()
    prune_through: int | None = None
    redact_instead: int = 0
    targets: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    @property
    def why(self) -> str:
        return (f"retention.{self.rule}: keep {self.keep_days} days, then {self.action}; "
                f"cut-off {self.cutoff.isoformat()}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: everything but the targets."""
        return {"record_class": self.record_class, "rule": f"retention.{self.rule}",
                "action": self.action, "keep_days": self.keep_days,
                "cutoff": self.cutoff.isoformat(), "candidates": self.candidates,
                "selected": self.selected, "skipped": self.skipped,
                "held": [{"hold_id": h.hold_id, "hold": h.description, "records": h.records}
                         for h in self.held],
                "prune_through": self.prune_through, "redact_instead": self.redact_instead,
                "notes": list(self.notes)}


@dataclass(frozen=True)
class RetentionPlan:
    """The plan of one retention run: one :class:`ClassPlan` per record class, at ``now``."""

    now: datetime
    classes: tuple[ClassPlan, ...]
    active_holds: tuple[Hold, ...] = ()

    @property
    def selected(self) -> int:
        return sum(c.selected for c in self.classes)

    @property
    def held(self) -> int:
        return sum(h.records for c in self.classes for h in c.held)

    def get(self, record_class: str) -> ClassPlan | None:
        return next((c for c in self.classes if c.record_class == record_class), None)

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "selected": self.selected, "held": self.held,
                "active_holds": [h.id for h in self.active_holds],
                "classes": [c.to_dict() for c in self.classes]}


class _HoldTally:
    def __init__(self, holds: Sequence[Hold]) -> None:
        self.holds = holds
        self.counts: dict[str, int] = {}
        self.by_id = {h.id: h for h in holds}

    def check(self, **record: Any) -> Hold | None:
        if not self.holds:
            return None
        hold = covered(self.holds, **record)
        if hold is not None:
            self.counts[hold.id] = self.counts.get(hold.id, 0) + 1
        return hold

    def result(self) -> tuple[HeldBack, ...]:
        return tuple(HeldBack(i, self.by_id[i].describe(), n) for i, n in self.counts.items())


@dataclass(frozen=True, slots=True)
class AuditRow:
    """An audit event as retention sees it (``doc_ids`` named in its payload)."""

    seq: int
    occurred_at: datetime
    actor: str
    tenant: str | None
    doc_ids: tuple[str, ...]
    redacted: bool


def _audit_hold(tally: _HoldTally, row: AuditRow) -> Hold | None:
    hold = covered(tally.holds, tenant=row.tenant, subject=row.actor, at=row.occurred_at)
    for doc_id in row.doc_ids:
        if hold is not None:
            break
        hold = covered(tally.holds, tenant=row.tenant, doc_id=doc_id)
    if hold is not None:
        tally.counts[hold.id] = tally.counts.get(hold.id, 0) + 1
    return hold


def plan_audit_events(rows: Iterable[AuditRow], rule: RetentionRule, *, now: datetime,
                      holds: Sequence[Hold], can_prune: bool = True,
                      pruned_through: int | None = None) -> ClassPlan:
    """Plan ``audit_events``: ``rows`` in seq order from the first present row, through at
    least the last one older than the cut-off. ``can_prune`` False (no signing key) makes a
    ``prune`` rule refuse with :class:`RetentionError`."""
    cutoff = cutoff_for(rule, now)
    if rule.action == "prune" and not can_prune:
        raise RetentionError("retention.audit_events.action is prune, which needs a checkpoint "
                             "signing key (audit.signing_key_env or audit.signing_key_file) to "
                             "sign the prune point; set one, or use action: redact")
    tally = _HoldTally(holds)
    candidates = skipped = 0
    prefix_open = rule.action == "prune"
    prune_through: int | None = None
    redact: list[int] = []
    stopped_by: str | None = None
    for row in rows:
        old = row.occurred_at < cutoff
        if not old:
            if prefix_open and stopped_by is None:
                stopped_by = f"seq {row.seq} is within the retention period"
            prefix_open = False
            continue
        candidates += 1
        hold = _audit_hold(tally, row) if tally.holds else None
        if hold is not None:
            if prefix_open:
                stopped_by = f"seq {row.seq} is held ({hold.id})"
            prefix_open = False
            continue
        if prefix_open:
            prune_through = row.seq
        elif row.redacted:
            skipped += 1
        else:
            redact.append(row.seq)
    notes: list[str] = []
    if pruned_through is not None:
        notes.append(f"events up to seq {pruned_through} were pruned by an earlier run")
    if rule.action == "prune" and redact:
        notes.append(f"pruning stops before {stopped_by}: {len(redact)} older, unheld events "
                     "after it are redacted instead (a pruned chain must start at one point)")
    first = pruned_through + 1 if pruned_through is not None else 1
    pruned = 0 if prune_through is None else prune_through - first + 1
    return ClassPlan("audit_events", "audit_events", rule.action, rule.keep_days, cutoff,
                     candidates, pruned + len(redact), tally.result(), skipped, tuple(notes),
                     prune_through=prune_through,
                     redact_instead=len(redact) if rule.action == "prune" else 0,
                     targets=tuple(redact))


@dataclass(frozen=True, slots=True)
class Row:
    """A record of a SQL class or a document: its key, time and what holds match on."""

    key: Any
    at: datetime
    tenant: str | None = None
    doc_id: str | None = None
    subject: str | None = None


def plan_rows(record_class: str, rule_name: str, rule: RetentionRule, rows: Iterable[Row], *,
              now: datetime, holds: Sequence[Hold], notes: Sequence[str] = ()) -> ClassPlan:
    """Plan a class whose due, unheld records are all deleted (``rows`` may include recent
    ones: only those older than the cut-off are candidates)."""
    cutoff = cutoff_for(rule, now)
    tally = _HoldTally(holds)
    candidates = 0
    targets: list[Any] = []
    for row in rows:
        if row.at >= cutoff:
            continue
        candidates += 1
        if tally.check(tenant=row.tenant, doc_id=row.doc_id, subject=row.subject,
                       at=row.at) is None:
            targets.append(row.key)
    return ClassPlan(record_class, rule_name, "delete", rule.keep_days, cutoff, candidates,
                     len(targets), tally.result(), notes=tuple(notes), targets=tuple(targets))


_DRIFT_FILE = re.compile(r"^drift-\d{4}-W\d{2}-(?P<tenant>.+)$")


def report_file_tenant(path: Path) -> str | None:
    """The tenant a report file is about (``drift-2026-W47-bank-a.html`` → ``bank-a``), or
    ``None`` for an all-tenant report."""
    match = _DRIFT_FILE.match(path.stem)
    return match.group("tenant") if match else None


@dataclass(frozen=True, slots=True)
class FileRow:
    path: Path
    modified: datetime


def doc_ids_of(payload: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Document ids an audit payload names (``doc_id`` or ``doc_ids``)."""
    if not payload:
        return ()
    found: list[str] = []
    one = payload.get("doc_id")
    if isinstance(one, str):
        found.append(one)
    many = payload.get("doc_ids")
    if isinstance(many, list):
        found += [d for d in many if isinstance(d, str)]
    return tuple(found)
