"""Retention of the other record classes with a frozen clock: the query log, drift snapshots
and report history (SQLite and PostgreSQL), report files on disk, documents in Milvus Lite;
the scheduler's job, the CLI, and a policy under the legal floor."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sqlalchemy import insert

from advanced_rag.config import validate_config
from advanced_rag.drift.store import DriftReferenceRow, DriftReportRow, DriftStore, QueryLogEntry
from advanced_rag.errors import ConfigError
from advanced_rag.types import Classification, Document
from compliance.audit import AuditEvent, AuditEventType, verify_chain
from compliance.manager import ComplianceManager
from compliance.retention.job import run_retention
from compliance.scheduling import run_now

from .conftest import NOW, Db

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
POLICY = {"query_log": {"keep_days": 30, "action": "prune"},
          "drift_snapshots": {"keep_days": 60, "action": "prune"},
          "report_files": {"keep_days": 90, "action": "prune"}}


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


async def fill_drift(db: Db, config: Any) -> None:
    """Query-log rows of two tenants (one held), references and report history, old and new."""
    vector = np.ones(8, dtype=np.float32)
    async with db.backend.store():  # creates the PostgreSQL schema the drift tables go in
        pass
    async with DriftStore.from_config(config) as store:
        await asyncio.to_thread(store.write_entries, [
            QueryLogEntry(f"q-{tenant}-{days}", ago(days), tenant, "hybrid", vector, 3)
            for tenant in ("bank-a", "bank-h") for days in (45, 40, 5)])
        with store.engine.begin() as conn:
            for name, days, tenant in (("old", 90, None), ("old-held", 90, "bank-h"),
                                       ("fresh", 10, None)):
                conn.execute(insert(DriftReferenceRow.__table__).values(  # type: ignore[attr-defined]
                    name=name, created_at=ago(days), created_by="t", description="", tenant=tenant,
                    size=1, dimension=8, embeddings=vector.astype(np.float16).tobytes(),
                    data="{}"))
        for period, days in (("2026-W01", 100), ("2026-W40", 20)):
            await store.add_report(DriftReportRow(period=period, reference="old", tenant=None,
                                                  created_at=ago(days), status="no_drift",
                                                  magnitude=0.1, digest="d" * 64))


def files(root: Path) -> dict[str, Path]:
    """Report files (and one that is not a report) with their ages set by mtime."""
    made = {}
    for name, days in (("drift/drift-2026-W01.json", 120), ("drift/drift-2026-W01.md", 120),
                       ("drift/drift-2026-W01-bank-h.html", 120), ("monthly/2026-01.html", 100),
                       ("drift/drift-2026-W45.html", 10), ("drift/chart.png", 300)):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("report", encoding="utf-8")
        stamp = ago(days).timestamp()
        os.utime(path, (stamp, stamp))
        made[name] = path
    return made


async def test_query_log_drift_snapshots_and_report_files(db: Db, tmp_path: Path) -> None:
    config = db.config(POLICY, drift={"reference": "old"})
    await fill_drift(db, config)
    made = files(db.data_dir / "reports")
    async with ComplianceManager(config) as cm:
        hold = await cm.place_legal_hold("tenant", tenant="bank-h", reason="inquiry 5",
                                         actor="legal")
        before = db.dump()
        dry = await cm.enforce_retention_policy(now=NOW, dry_run=True)
        assert db.dump() == before and all(p.exists() for p in made.values())
        summary = {c.record_class: (c.candidates, c.selected, sum(h.records for h in c.held))
                   for c in dry.plan.classes}
        assert summary["query_log"] == (4, 2, 2)
        assert summary["drift_snapshots"] == (3, 2, 1)  # 2 references + 1 report due
        assert summary["report_files"] == (4, 3, 1)
        drift_plan = dry.plan.get("drift_snapshots")
        assert drift_plan is not None and "'old', the configured drift.reference" in \
            drift_plan.notes[0]
        assert [h.hold_id for h in drift_plan.held] == [hold.id]

        result = await cm.enforce_retention_policy(now=NOW, actor="ops")
        assert {o.record_class: o.done for o in result.outcomes} == {
            "query_log": 2, "drift_snapshots": 2, "report_files": 3, "audit_events": 0}
        assert sorted(r[0] for r in db.sql("SELECT event_id FROM query_log")) == [
            "q-bank-a-5", "q-bank-h-40", "q-bank-h-45", "q-bank-h-5"]
        assert sorted(r[0] for r in db.sql("SELECT name FROM drift_reference")) == [
            "fresh", "old-held"]
        assert [r[0] for r in db.sql("SELECT period FROM drift_report")] == ["2026-W40"]
        assert {name for name, path in made.items() if path.exists()} == {
            "drift/drift-2026-W01-bank-h.html", "drift/drift-2026-W45.html", "drift/chart.png"}
        await verify_chain(cm.store)
        summary_now = result.summary()
        assert summary_now["status"] == "applied"
        assert summary_now["classes"]["report_files"]["held"] == 1


async def test_documents_by_classification_in_milvus_lite(embedder: Any, tmp_path: Path) -> None:
    from advanced_rag import AdvancedRAGPipeline

    config = validate_config({
        "data_dir": str(tmp_path / "data"), "milvus": {"uri": str(tmp_path / "milvus.db")},
        "chunking": {"max_tokens": 64, "min_tokens": 4},
        "retention": {"documents": {"restricted": {"keep_days": 1, "action": "delete"}}}})
    now = datetime.now(UTC) + timedelta(days=3)  # everything ingested now is two days over
    async with AdvancedRAGPipeline(config, embedder=embedder) as rag:
        for tenant in ("bank-a", "bank-b"):
            await rag.ingest([
                Document(f"{tenant}-{kind}-{i}", f"Policy text {i} about {kind} wire transfers.",
                         classification=Classification(kind))
                for kind in ("restricted", "public") for i in range(2)], tenant=tenant)
        store: Any = rag.store
        found = await store.documents_created_before(int(now.timestamp()),
                                                     classification="restricted")
        assert sorted((d.tenant, d.doc_id) for d in found) == [
            ("bank-a", "bank-a-restricted-0"), ("bank-a", "bank-a-restricted-1"),
            ("bank-b", "bank-b-restricted-0"), ("bank-b", "bank-b-restricted-1")]
        assert all(d.classification == "restricted" for d in found)
        assert await store.documents_created_before(int((now - timedelta(days=4)).timestamp())) \
            == []  # nothing was ingested four days before the frozen clock

        async with ComplianceManager(config) as cm:
            hold = await cm.place_legal_hold("document", tenant="bank-b",
                                             doc_id="bank-b-restricted-1", reason="litigation",
                                             actor="legal")
        dry = await run_retention(config, now=now, dry_run=True, pipeline=rag)
        plan = dry.plan.get("documents:restricted")
        assert plan is not None and (plan.candidates, plan.selected) == (4, 3)
        assert [(h.hold_id, h.records) for h in plan.held] == [(hold.id, 1)]
        assert await store.count() > 0 and len(found) == 4

        result = await run_retention(config, now=now, actor="ops", pipeline=rag)
        assert {o.record_class: o.done for o in result.outcomes}["documents:restricted"] == 3
        left = await store.documents_created_before(int(now.timestamp()))
        assert sorted(d.doc_id for d in left) == [
            "bank-a-public-0", "bank-a-public-1", "bank-b-public-0", "bank-b-public-1",
            "bank-b-restricted-1"]
        async with ComplianceManager(config) as cm:
            deleted = await cm.query_audit_logs(event_type=AuditEventType.DOCUMENT_DELETED)
            assert {(e.tenant, e.actor) for e in deleted} == {("bank-a", "ops"), ("bank-b", "ops")}
            assert all(e.request_id == f"retention-{result.plan_event_id}" for e in deleted)
            assert sorted(d for e in deleted for d in (e.payload or {})["doc_ids"]) == [
                "bank-a-restricted-0", "bank-a-restricted-1", "bank-b-restricted-0"]
            await verify_chain(cm.store)


async def test_the_scheduler_job_runs_retention_audited(db: Db, tmp_path: Path) -> None:
    config = db.config({"legal_floor_days": 183,
                        "audit_events": {"keep_days": 183, "action": "redact"}})
    async with db.backend.store() as store:
        old = await store.append(AuditEvent("retrieval", "svc", {"q": "old"},
                                            occurred_at=datetime.now(UTC) - timedelta(days=400)))
    summary = await run_now("retention", config, None)
    assert summary["status"] == "applied"
    assert summary["classes"]["audit_events"] == {
        "action": "redact", "cutoff": summary["classes"]["audit_events"]["cutoff"],
        "selected": 1, "held": 0, "done": 1, "error": None}
    async with ComplianceManager(config) as cm:
        kinds = [r.event_type for r in await cm.query_audit_logs(limit=100)]
        assert kinds == [AuditEventType.RETRIEVAL, AuditEventType.JOB_STARTED,
                         AuditEventType.RETENTION, AuditEventType.RETENTION,
                         AuditEventType.JOB_FINISHED]
        [finished] = await cm.query_audit_logs(event_type=AuditEventType.JOB_FINISHED)
        assert finished.payload is not None and finished.payload["summary"] == summary
        record = await cm.store.get(old.seq)
        assert record is not None and record.redacted
        assert (await verify_chain(cm.store)).events_checked == 5


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["HF_HUB_OFFLINE"] = "1"
    return env


def cli(tmp_path: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "advanced_rag.cli", "retention", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, env=_env(),
                          input=stdin)


def test_cli_plan_apply_and_holds(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"),
                                      "retention": POLICY}), encoding="utf-8")
    made = files(tmp_path / "data" / "reports")
    now = NOW.isoformat()
    assert cli(tmp_path).returncode == 2
    help_text = cli(tmp_path, "hold", "place", "--help").stdout
    assert "--scope" in help_text and "time-range" in help_text

    out = cli(tmp_path, "hold", "place", "--config", str(config), "--scope", "time-range",
              "--start", (NOW - timedelta(days=125)).isoformat(),
              "--end", (NOW - timedelta(days=115)).isoformat(), "--reason", "audit", "--json")
    assert out.returncode == 0, out.stderr
    hold = json.loads(out.stdout)
    assert hold["scope"] == "time_range"
    out = cli(tmp_path, "hold", "list", "--config", str(config), "--json")
    assert [h["id"] for h in json.loads(out.stdout)] == [hold["id"]]
    bad = cli(tmp_path, "hold", "place", "--config", str(config), "--scope", "document",
              "--reason", "x")
    assert bad.returncode == 2 and "needs doc_id" in bad.stderr

    out = cli(tmp_path, "plan", "--config", str(config), "--now", now, "--json")
    assert out.returncode == 0, out.stderr
    files_plan = next(c for c in json.loads(out.stdout)["classes"]
                      if c["record_class"] == "report_files")
    assert (files_plan["selected"], files_plan["held"][0]["hold_id"]) == (1, hold["id"])
    table = cli(tmp_path, "plan", "--config", str(config), "--now", now)
    assert "report_files" in table.stdout and f"kept 3 by legal hold {hold['id']}" in table.stdout

    refused = cli(tmp_path, "apply", "--config", str(config), "--now", now, stdin="")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    out = cli(tmp_path, "apply", "--config", str(config), "--now", now, "--yes", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["classes"]["report_files"]["done"] == 1
    assert not made["monthly/2026-01.html"].exists() and made["drift/drift-2026-W01.md"].exists()

    out = cli(tmp_path, "hold", "release", hold["id"], "--config", str(config), "--reason", "done")
    assert out.returncode == 0 and "released" in out.stdout
    again = cli(tmp_path, "hold", "release", hold["id"], "--config", str(config), "--reason", "x")
    assert again.returncode == 2 and "no active legal hold" in again.stderr


def test_a_policy_under_the_legal_floor_is_refused_clearly(tmp_path: Path) -> None:
    short = {"retention": {"audit_events": {"keep_days": 30, "action": "prune"}}}
    with pytest.raises(ConfigError, match="below the legal floor of 183 days"):
        validate_config(short)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), **short}),
                      encoding="utf-8")
    for command in (["plan"], ["apply", "--yes"]):
        out = cli(tmp_path, *command, "--config", str(config))
        assert out.returncode == 2
        assert "retention.audit_events" in out.stderr and "legal floor" in out.stderr
    assert not (tmp_path / "data").exists()  # refused before any database was opened
    from advanced_rag.config import RetentionSettings
    from compliance.errors import RetentionError
    from compliance.retention.policy import RetentionPolicy

    unchecked = RetentionSettings.model_construct(
        legal_floor_days=183, audit_events=validate_config({}).retention.audit_events.model_copy(
            update={"keep_days": 30}))
    with pytest.raises(RetentionError, match="legal floor"):
        RetentionPolicy(unchecked)
