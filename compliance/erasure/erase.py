"""Erasing a data subject (GDPR Art. 17): destroy its key, delete its query-log rows, audit it.

:func:`erase_subject` refuses while an active legal hold covers the subject: a ``subject``
hold on it, or a ``tenant`` / ``time_range`` hold covering any event the subject made (its
one key encrypts all of them, so shredding cannot spare the held ones). Otherwise, in one
transaction, it destroys every live key of the subject (the row stays, the key material is
set to NULL, ``destroyed_at``/``destroyed_by``/``reason`` are filled) and deletes the subject's
``query_log`` rows (those whose ``retrieval`` audit event has the subject as actor: they hold
the query embeddings). Events the subject made before encryption was on still hold plaintext
personal-data fields: their payloads are redacted (NULL; the digest stays, the chain still
verifies). Finally an ``erasure`` event records what was erased by reference only: the
subject's SHA-256, the key ids, the counts, and the operator's reason (PII-masked).

What it does not reach, and says so: named drift reference snapshots copied out of the query
log before the erasure (listed in the report as ``drift_references``; recapture them), the
actor column of the subject's events (keep actors pseudonymous: user ids, not e-mail
addresses), query-log rows still buffered in a running pipeline (up to about a second; run the
erasure again to sweep them), and copies outside the database (backups, exports).

Example::

    report = await erase_subject(config, "user-8841", actor="dpo", reason="Art. 17 request #77")
    report.key_ids, report.query_log_rows_deleted
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, column, delete, func, inspect, select, table

from advanced_rag.errors import InputError

from ..audit.engine import WRITE_OPTION
from ..audit.models import AuditEvent, AuditEventRow, AuditEventType
from ..audit.trail import AuditTrail
from ..errors import SubjectHeldError
from ..retention.holds import Hold, LegalHolds, covered
from .crypto import ENVELOPE_MARKER, is_envelope
from .keys import KeyInfo, SubjectKeys, destroy_statement, live_kids_statement, subject_ref

if TYPE_CHECKING:
    from advanced_rag.config import PipelineConfig

__all__ = ["ErasureReport", "SubjectHeldError", "SubjectStatus", "erase_subject",
           "subject_status"]

log = logging.getLogger(__name__)
_EVENTS = AuditEventRow.__table__  # type: ignore[attr-defined]
_QUERY_LOG = table("query_log", column("event_id"))
_REFERENCES = table("drift_reference", column("name"), column("data"))
_BATCH = 5000


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What :func:`erase_subject` did. ``drift_references`` are named reference snapshots that
    still hold rows copied from the subject's queries (recapture them to drop those)."""

    subject_ref: str
    key_ids: tuple[str, ...]
    events_shredded: int
    events_redacted: int
    query_log_rows_deleted: int
    drift_references: tuple[str, ...]
    erased_at: datetime
    event_id: str | None


@dataclass(frozen=True, slots=True)
class SubjectStatus:
    """A subject's keys, events, query-log rows and the holds covering it."""

    subject_ref: str
    keys: tuple[KeyInfo, ...]
    events: int
    query_log_rows: int
    holds: tuple[Hold, ...]

    @property
    def erased(self) -> bool:
        """True when a key was destroyed and none is live (nothing readable is left)."""
        return any(k.destroyed for k in self.keys) and not any(not k.destroyed for k in self.keys)


def _check(subject: object, **texts: object) -> None:
    for name, value in (("subject", subject), *texts.items()):
        if not isinstance(value, str) or not value.strip():
            raise InputError(f"erasure needs a non-empty {name}")


# -- SQL (blocking; run in worker threads) ----------------------------------------------------


def _has_table(engine: Engine, name: str) -> bool:
    with engine.connect() as conn:
        return name in inspect(conn).get_table_names()


def _held_by_records(engine: Engine, subject: str, holds: Sequence[Hold]) -> Hold | None:
    """The first tenant or time-range hold covering an event the subject made."""
    with engine.connect() as conn:
        for hold in holds:
            if hold.scope not in ("tenant", "time_range"):
                continue
            stmt = select(_EVENTS.c.seq).where(_EVENTS.c.actor == subject)
            if hold.tenant is not None:
                stmt = stmt.where(_EVENTS.c.tenant == hold.tenant)
            if hold.scope == "time_range":
                if hold.start is not None:
                    stmt = stmt.where(_EVENTS.c.occurred_at >= hold.start)
                if hold.end is not None:
                    stmt = stmt.where(_EVENTS.c.occurred_at < hold.end)
            if conn.execute(stmt.limit(1)).first() is not None:
                return hold
    return None


def _retrievals(subject: str) -> Any:
    return select(_EVENTS.c.event_id).where(_EVENTS.c.actor == subject,
                                            _EVENTS.c.event_type == AuditEventType.RETRIEVAL.value)


def _shred(engine: Engine, ref: str, subject: str, *, actor: str, reason: str,
           when: datetime) -> tuple[list[str], int]:
    """Destroy the live keys and delete the query-log rows in one transaction."""
    query_log = _has_table(engine, "query_log")
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw = conn.connection.driver_connection
        if sqlite:  # overwrite freed cells instead of leaving the old key bytes in free space
            raw.execute("PRAGMA secure_delete=ON")  # type: ignore[union-attr]
        try:
            with conn.begin():
                kids = [r[0] for r in conn.execute(live_kids_statement(ref))]
                conn.execute(destroy_statement(ref, actor=actor, reason=reason, when=when))
                deleted = 0
                if query_log:
                    deleted = conn.execute(delete(_QUERY_LOG).where(
                        _QUERY_LOG.c.event_id.in_(_retrievals(subject)))).rowcount or 0
        finally:
            if sqlite:
                raw.execute("PRAGMA secure_delete=OFF")  # type: ignore[union-attr]
        if sqlite:  # move the overwritten pages out of the WAL and truncate it (best effort)
            busy = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()  # type: ignore[union-attr]
            if busy and busy[0]:
                log.info("erasure: WAL checkpoint incomplete (readers active); old pages stay "
                         "in the WAL until the next checkpoint")
    return kids, deleted


def _scan(engine: Engine, subject: str, fields: Sequence[str]) -> tuple[int, list[int]]:
    """(events whose payload holds envelopes, seqs whose payload holds plaintext fields)."""
    shredded, plaintext, after = 0, [], 0
    with engine.connect() as conn:
        while True:
            rows = conn.execute(select(_EVENTS.c.seq, _EVENTS.c.payload).where(
                _EVENTS.c.actor == subject, _EVENTS.c.payload.is_not(None),
                _EVENTS.c.seq > after).order_by(_EVENTS.c.seq).limit(_BATCH)).all()
            for seq, text in rows:
                payload = json.loads(text)
                if any(isinstance(payload.get(f), str) for f in fields):
                    plaintext.append(seq)
                elif ENVELOPE_MARKER in text and any(is_envelope(v) for v in payload.values()):
                    shredded += 1
            if len(rows) < _BATCH:
                return shredded, plaintext
            after = rows[-1][0]


def _references_with(engine: Engine, subject: str) -> list[str]:
    if not _has_table(engine, "drift_reference"):
        return []
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(_retrievals(subject))}
        if not ids:
            return []
        names = []
        for name, data in conn.execute(select(_REFERENCES.c.name, _REFERENCES.c.data)):
            if ids.intersection(json.loads(data).get("ids", ())):
                names.append(str(name))
        return sorted(names)


def _counts(engine: Engine, subject: str) -> tuple[int, int]:
    with engine.connect() as conn:
        events = conn.execute(select(func.count()).select_from(_EVENTS).where(
            _EVENTS.c.actor == subject)).scalar_one()
    rows = 0
    if _has_table(engine, "query_log"):
        with engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(_QUERY_LOG).where(
                _QUERY_LOG.c.event_id.in_(_retrievals(subject)))).scalar_one()
    return int(events), int(rows)


# -- the operations ---------------------------------------------------------------------------


class _Session:
    """The trail (given, or built and opened from the config) and the key store it uses."""

    def __init__(self, config: PipelineConfig, trail: AuditTrail | None) -> None:
        self.config, self.given = config, trail
        self.trail = trail or AuditTrail.from_settings(
            config.audit.model_copy(update={"enabled": True}), data_dir=config.data_dir,
            erasure=config.erasure)
        self.own_keys: SubjectKeys | None = None

    async def __aenter__(self) -> tuple[AuditTrail, SubjectKeys]:
        if self.given is None:
            await self.trail.open()
        if self.trail.cipher is not None:
            return self.trail, self.trail.cipher.keys
        self.own_keys = SubjectKeys.from_settings(self.config.audit, self.config.erasure,
                                                  data_dir=self.config.data_dir)
        return self.trail, await self.own_keys.open()

    async def __aexit__(self, *exc: object) -> None:
        if self.own_keys is not None:
            await self.own_keys.close()
        if self.given is None:
            await self.trail.close()


async def _holds(config: PipelineConfig) -> list[Hold]:
    holds = await LegalHolds.open(config)
    try:
        return await holds.active()
    finally:
        await holds.close()


async def erase_subject(config: PipelineConfig, subject_id: str, *, actor: str, reason: str,
                        trail: AuditTrail | None = None,
                        now: datetime | None = None) -> ErasureReport:
    """Erase ``subject_id`` (the ``actor`` its events were recorded under); see the module
    docstring. ``actor`` is who erases (recorded), ``reason`` why (recorded, PII-masked).

    Raises :class:`SubjectHeldError` (recording the refusal) when a legal hold covers the
    subject. Erasing a subject twice is harmless: the second run destroys nothing new.

    Example::

        report = await erase_subject(config, "user-8841", actor="dpo", reason="ticket 77")
    """
    _check(subject_id, actor=actor, reason=reason)
    ref = subject_ref(subject_id)
    async with _Session(config, trail) as (audit, keys):
        active = await _holds(config)
        hold = covered(active, subject=subject_id) or await asyncio.to_thread(
            _held_by_records, keys.engine, subject_id, active)
        if hold is not None:
            await audit.record([AuditEvent(AuditEventType.ERASURE, actor, {
                "subject_ref": ref, "outcome": "refused", "hold_id": hold.id,
                "hold_scope": hold.scope, "reason": audit.text(reason)})])
            raise SubjectHeldError(hold)
        when = now or datetime.now(UTC)
        kids, deleted = await asyncio.to_thread(_shred, keys.engine, ref, subject_id,
                                                actor=actor, reason=audit.text(reason),
                                                when=when)
        keys.forget(ref)
        shredded, plaintext = await asyncio.to_thread(_scan, keys.engine, subject_id,
                                                      config.erasure.fields)
        for seq in plaintext:
            await audit.store.redact_payload(seq)
        references = await asyncio.to_thread(_references_with, keys.engine, subject_id)
        if references:
            log.warning("erasure of subject %s…: drift reference(s) %s still hold rows copied "
                        "from its queries; recapture them", ref[:12], ", ".join(references))
        event = AuditEvent(AuditEventType.ERASURE, actor, {
            "subject_ref": ref, "outcome": "ok", "key_ids": kids, "keys_destroyed": len(kids),
            "events_shredded": shredded, "events_redacted": len(plaintext),
            "query_log_rows_deleted": deleted, "drift_references_with_subject": references,
            "reason": audit.text(reason)})
        recorded = await audit.record([event])
    return ErasureReport(ref, tuple(kids), shredded, len(plaintext), deleted, tuple(references),
                         when, event.event_id if recorded else None)


async def subject_status(config: PipelineConfig, subject_id: str, *,
                         trail: AuditTrail | None = None) -> SubjectStatus:
    """What the database holds about ``subject_id``: its keys (live or destroyed, never their
    material), how many events it made, its query-log rows, and the holds covering it."""
    _check(subject_id)
    ref = subject_ref(subject_id)
    async with _Session(config, trail) as (_, keys):
        infos = await keys.infos(ref)
        events, rows = await asyncio.to_thread(_counts, keys.engine, subject_id)
        active = await _holds(config)
        held = [h for h in active if h.covers(subject=subject_id)]
        for hold in active:
            if hold in held:
                continue
            found = await asyncio.to_thread(_held_by_records, keys.engine, subject_id, [hold])
            if found is not None:
                held.append(found)
    return SubjectStatus(ref, tuple(infos), events, rows, tuple(held))
