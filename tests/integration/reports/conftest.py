"""A month of audit events (October 2026) seeded through the real AuditTrail, on a SQLite file
and (with ``AUDIT_TEST_POSTGRES_URL`` set) on a fresh PostgreSQL schema, plus what the test
expects, computed from the seeded values themselves (never from the log).

Events are appended in shuffled order (``occurred_at`` does not grow with ``seq``), some just
outside the month (the last microsecond of September, the first instant of November), one
retrieval's payload is redacted through the store, and the retention / legal-hold / erasure
events carry fields the report does not know.
"""

from __future__ import annotations

import os
import random
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from advanced_rag.config import PipelineConfig, validate_config
from compliance.audit import AuditEvent, AuditEventType, CheckpointSigner
from compliance.audit.trail import AuditTrail
from tests.integration.audit.conftest import Backend, _postgres

REPO = Path(__file__).resolve().parents[3]
START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 1, tzinfo=UTC)
TARGET_MS = 40.0
TENANTS = ("bank-a", "bank-b")
ACTORS = ("teller-1", "teller-2", "svc-rag")


class Db(Backend):
    """Where the audit log lives, and raw SQL behind the library's back."""

    def audit(self) -> dict[str, Any]:
        return {} if self.name == "sqlite" else {"url": self.url, "schema": self.schema}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        yield Db("sqlite", f"sqlite:///{tmp_path / 'data' / 'audit.db'}", None)
        return
    with _postgres("report_t", Db) as pg:
        yield pg


@pytest.fixture(scope="session")
def signer() -> CheckpointSigner:
    return CheckpointSigner.generate()


def write_config(tmp_path: Path, db: Db, *, key: CheckpointSigner | None = None,
                 checkpoint_every: int | None = None) -> tuple[PipelineConfig, Path]:
    """A config file (scripts and the CLI read it) and the config it holds."""
    audit: dict[str, Any] = db.audit()
    if key is not None:
        key_file = tmp_path / "signing.pem"
        if not key_file.exists():
            key.save(key_file)
        audit |= {"signing_key_file": str(key_file), "anchor": str(tmp_path / "anchor.jsonl")}
        if checkpoint_every:
            audit["checkpoint_every"] = checkpoint_every
    data = {"data_dir": str(tmp_path / "data"), "audit": audit,
            "pipeline": {"target_latency_ms": TARGET_MS}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return validate_config(data), path


@dataclass
class Expected:
    """What the seeded month must produce, from the seeded values."""

    by_type: Counter[str] = field(default_factory=Counter)
    by_tenant: Counter[str] = field(default_factory=Counter)
    by_actor: Counter[str] = field(default_factory=Counter)
    retrievals: dict[str, tuple[datetime, dict[str, float]]] = field(default_factory=dict)
    retrieval_errors: int = 0
    redacted_seq: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    faithfulness: list[float] = field(default_factory=list)
    risk: list[float] = field(default_factory=list)
    risk_unknown: int = 0
    drift: list[tuple[str, float]] = field(default_factory=list)
    denied_actor: Counter[str] = field(default_factory=Counter)
    denied_tenant: Counter[str] = field(default_factory=Counter)
    in_period_seqs: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.by_type.values())

    @property
    def stage_ms(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for _, stages in self.retrievals.values():
            for stage, ms in stages.items():
                out.setdefault(stage, []).append(ms)
        return out

    @property
    def totals(self) -> list[tuple[datetime, float]]:
        """(when, sum of the stages) of each successful retrieval with a payload."""
        return [(when, sum(stages.values())) for when, stages in self.retrievals.values()]


def _event(kind: AuditEventType, when: datetime, payload: dict[str, Any], *,
           actor: str = "svc-rag", tenant: str | None = None) -> AuditEvent:
    return AuditEvent(kind, actor, payload, tenant=tenant, occurred_at=when,
                      request_id=f"r-{uuid.uuid4().hex[:8]}")


def _month(rng: random.Random, expected: Expected) -> list[AuditEvent]:
    """October's events, with what they should count as."""
    events: list[AuditEvent] = []

    def at() -> datetime:
        return START + timedelta(seconds=rng.uniform(0, (END - START).total_seconds() - 1))

    def add(event: AuditEvent) -> None:
        events.append(event)
        expected.by_type[str(event.event_type)] += 1
        expected.by_tenant[event.tenant or "(none)"] += 1
        expected.by_actor[event.actor] += 1

    for sha, day in (("c" * 64, 1), ("d" * 64, 15)):
        add(_event(AuditEventType.CONFIG_LOADED, START + timedelta(days=day - 1, hours=8),
                   {"config_sha256": sha, "config": {"pipeline": {"top_k": 20}}}))
        add(_event(AuditEventType.MODEL_LOADED, START + timedelta(days=day - 1, hours=8, seconds=1),
                   {"role": "embedder", "model": "all-MiniLM-L6-v2", "weights_sha256": "e" * 64,
                    "dimension": 384}))
    for i in range(240):
        tenant, actor, when = rng.choice(TENANTS), rng.choice(ACTORS), at()
        if i % 40 == 0:  # a failed search records one latency number and an error
            add(_event(AuditEventType.RETRIEVAL, when, {
                "query": "q", "outcome": "error", "error": "VectorStoreError",
                "latency_ms": 1200.0}, actor=actor, tenant=tenant))
            expected.retrieval_errors += 1
            continue
        stages = {"embed": round(rng.lognormvariate(2.3, 0.3), 3),
                  "search": round(rng.lognormvariate(3.0, 0.5), 3),
                  "risk": round(rng.uniform(0.1, 0.9), 3)}
        if i % 3 == 0:
            stages["rerank"] = round(rng.lognormvariate(3.5, 0.2), 3)
        event = _event(AuditEventType.RETRIEVAL, when, {
            "query": f"question {i}", "query_chars": 11, "search_type": "hybrid", "top_k": 20,
            "results": {"chunk_id": ["c1"], "doc_id": ["d1"], "doc_version": [1], "scores": {}},
            "latency_ms": stages, "outcome": "ok"}, actor=actor, tenant=tenant)
        add(event)
        expected.retrievals[event.event_id] = (when, stages)
    for _ in range(80):
        tenant, when = rng.choice(TENANTS), at()
        decision = rng.choices(["returned", "flagged", "withheld", "refused"], [6, 2, 1, 1])[0]
        faithfulness = round(rng.random(), 4)
        risk = None if rng.random() < 0.1 else round(rng.random(), 4)
        add(_event(AuditEventType.GENERATION, when, {
            "generator": "extractive", "answer": "…", "refused": decision == "refused",
            "decision": decision, "citations": [], "outcome": "ok"}, tenant=tenant))
        add(_event(AuditEventType.SCORING, when + timedelta(milliseconds=5), {
            "judge": "feature", "judge_version": "v1", "faithfulness_score": faithfulness,
            "hallucination_risk": risk, "claims": 2, "decision": decision, "outcome": "ok",
            "unsupported_claims": []}, tenant=tenant))
        expected.decisions[decision] += 1
        expected.faithfulness.append(faithfulness)
        if risk is None:
            expected.risk_unknown += 1
        else:
            expected.risk.append(risk)
    for kind, n in ((AuditEventType.DOCUMENT_INGESTED, 12), (AuditEventType.DOCUMENT_UPDATED, 7),
                    (AuditEventType.DOCUMENT_DELETED, 2)):
        for i in range(n):
            add(_event(kind, at(), {"doc_id": f"doc-{i}", "version": 2, "status": "x"},
                       tenant="bank-a"))
    for week, magnitude in (("2026-W40", 0.08), ("2026-W41", 0.12), ("2026-W42", 0.41),
                            ("2026-W43", 0.2)):
        monday = datetime.fromisocalendar(2026, int(week[-2:]) + 1, 1).replace(tzinfo=UTC)
        add(_event(AuditEventType.DRIFT_REPORT, monday + timedelta(hours=6), {
            "reference": "default", "period": week, "report_sha256": "f" * 64, "files": {},
            "report": {"status": "drift" if magnitude > 0.3 else "no_drift",
                       "drift_detected": magnitude > 0.3, "drift_magnitude": magnitude}},
            actor="scheduler"))
        expected.drift.append((week, magnitude))
    add(_event(AuditEventType.RETENTION, at(), {
        "policy": "audit_events", "action": "redact", "redacted": 120, "cutoff": "2020-10-01",
        "per_tenant": {f"tenant-{i}": i for i in range(40)}}, actor="scheduler"))
    add(_event(AuditEventType.RETENTION, at(), {"policy": "query_log", "action": "prune",
                                                "deleted": 3}, actor="scheduler"))
    add(_event(AuditEventType.LEGAL_HOLD, at(), {"operation": "place", "scope": "tenant",
                                                 "hold_id": "h-1", "reason": "SEC inquiry"},
               actor="legal", tenant="bank-b"))
    add(_event(AuditEventType.ERASURE, at(), {"target": "document", "doc_id": "kyc-7",
                                              "versions": [1, 2], "chunks_deleted": 4,
                                              "outcome": "ok"}, actor="dpo", tenant="bank-a"))
    for i in range(5):
        asked = "bank-b" if i < 4 else "bank-c"
        add(_event(AuditEventType.ACCESS_DENIED, at(), {
            "operation": "retrieve", "requested_tenant": asked, "error": "TenantError",
            "outcome": "denied"}, actor="intruder"))
        expected.denied_actor["intruder"] += 1
        expected.denied_tenant[asked] += 1
    return events


def _outside(rng: random.Random) -> list[AuditEvent]:
    """Events the report must not count: just before and exactly at the end of the month."""
    before = START - timedelta(microseconds=1)
    return [
        _event(AuditEventType.CONFIG_LOADED, START - timedelta(days=10),
               {"config_sha256": "b" * 64}),
        _event(AuditEventType.MODEL_LOADED, START - timedelta(days=10),
               {"role": "reranker", "model": "ms-marco-MiniLM", "weights_sha256": "a" * 64}),
        _event(AuditEventType.MODEL_LOADED, START - timedelta(days=9),
               {"role": "embedder", "model": "old-embedder", "weights_sha256": "9" * 64}),
        *[_event(AuditEventType.RETRIEVAL, when, {"latency_ms": {"search": 5000.0},
                                                  "outcome": "ok"}, tenant="bank-a")
          for when in (before, END, END + timedelta(days=3))],
        _event(AuditEventType.ACCESS_DENIED, END, {"operation": "retrieve"}, actor="intruder"),
        _event(AuditEventType.DOCUMENT_UPDATED, before, {"doc_id": "x"}),
    ]


async def seed(config: PipelineConfig, *, seed: int = 7) -> Expected:
    """Append October (and its neighbours) in shuffled order; redact one retrieval."""
    rng = random.Random(seed)
    expected = Expected()
    month = _month(rng, expected)
    everything = month + _outside(rng)
    rng.shuffle(everything)
    in_month = {e.event_id for e in month}
    async with AuditTrail.from_settings(config.audit, data_dir=config.data_dir) as trail:
        records = []
        for i in range(0, len(everything), 25):
            records += await trail.record(everything[i:i + 25])
        expected.in_period_seqs = [r.seq for r in records if r.event_id in in_month]
        # retention erased one successful retrieval's payload: counted, but no latency
        victim = next(r for r in records if r.event_id in in_month
                      and r.event_type is AuditEventType.RETRIEVAL
                      and r.payload is not None and r.payload["outcome"] == "ok")
        await trail.store.redact_payload(victim.seq)
    expected.redacted_seq = victim.seq
    del expected.retrievals[victim.event_id]
    return expected


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("ADVANCED_RAG_AUDIT_SIGNING_KEY", None)
    return env


PYTHON = sys.executable
