"""The monthly compliance report against a seeded month of real audit events.

Every expected number is computed from the values the test seeded (conftest.Expected), never
read back from the log; tampering is done with raw SQL after dropping the guard triggers.
"""

from __future__ import annotations

import html
import json
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from compliance.audit import AuditEventType, CheckpointSigner
from compliance.errors import SchedulerError
from compliance.manager import ComplianceManager
from compliance.reports import (
    EXIT_CHAIN_INVALID,
    SECTION_TITLES,
    last_full_month,
    scheduled_monthly_report,
    verify_report_file,
    write_monthly_report,
)
from compliance.scheduling import run_now

from .conftest import END, PYTHON, REPO, START, TARGET_MS, Db, child_env, seed, write_config

pytestmark = pytest.mark.integration

SCRIPT = REPO / "scripts" / "monthly_compliance_report.py"


def text(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8")


def write(path: str | Path, content: str) -> None:
    Path(path).write_text(content, encoding="utf-8")


def exists(path: str | Path) -> bool:
    return Path(path).exists()


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=child_env())


async def test_report_figures_match_the_seeded_month(db: Db, tmp_path: Path) -> None:
    config, _ = write_config(tmp_path, db)
    expected = await seed(config)
    async with ComplianceManager(config) as cm:
        report = await cm.generate_compliance_report(start_date=date(2026, 10, 1),
                                                     end_date=date(2026, 11, 1))
        head = await cm.store.head()

    assert (report.start, report.end) == (START, END)
    assert report.chain.verified and report.chain.failure is None
    assert report.chain.head_seq == head.seq == report.chain.events_checked
    assert report.chain.head_hash == head.entry_hash
    assert report.chain.redacted_events == 1
    assert report.total_events == report["total_events"] == expected.total == len(
        expected.in_period_seqs)
    assert report.version_updates == report["version_updates"] == 7
    assert dict(report.events_by_type) == dict(expected.by_type)
    assert dict(report.events_by_tenant) == dict(expected.by_tenant)
    assert dict(report.events_by_actor) == dict(expected.by_actor)
    assert sum(sum(day.values()) for day in report.events_per_day.values()) == expected.total
    assert all(day.startswith("2026-10-") for day in report.events_per_day)
    assert report.documents == {"ingested": 12, "updated": 7, "skipped": 0, "failed": 0,
                                "deleted": 2}
    assert report.redacted_payloads == 1 and report.unreadable_payloads == 0

    r = report.retrieval
    assert (r.requests, r.errors, r.without_latency) == (240, expected.retrieval_errors, 1)
    assert r.ok == 240 - expected.retrieval_errors
    assert sum(r.by_tenant.values()) == 240
    stage_ms = expected.stage_ms
    assert set(r.stages) == {*stage_ms, "total"} and list(r.stages)[-1] == "total"
    for stage, values in stage_ms.items():
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        got = r.stages[stage]
        assert got.count == len(values)
        assert (got.p50, got.p95, got.p99) == pytest.approx((p50, p95, p99), abs=1e-9)
    totals = [ms for _, ms in expected.totals]
    assert r.stages["total"].count == len(totals) == r.ok - 1
    assert r.stages["total"].p99 == pytest.approx(np.percentile(totals, 99), abs=1e-9)
    met = sum(ms <= TARGET_MS for ms in totals)
    assert 0 < met < len(totals)  # the seeded latencies straddle the target
    assert (r.sla.target_latency_ms, r.sla.requests, r.sla.met) == (TARGET_MS, len(totals), met)
    assert r.sla.compliance_rate == pytest.approx(met / len(totals))
    assert "lower bound" in r.sla.measured_as

    q = report.quality
    assert q.answers == q.scored == 80
    assert dict(q.decisions) == dict(expected.decisions)
    assert (q.flagged, q.withheld, q.refused) == (expected.decisions["flagged"],
                                                  expected.decisions["withheld"],
                                                  expected.decisions["refused"])
    assert q.faithfulness is not None and q.hallucination_risk is not None
    assert q.faithfulness.count == 80 and sum(q.faithfulness.histogram) == 80
    assert q.faithfulness.mean == pytest.approx(np.mean(expected.faithfulness))
    assert q.hallucination_risk.count == len(expected.risk) == 80 - q.risk_unknown
    assert q.risk_unknown == expected.risk_unknown
    assert q.hallucination_risk.p90 == pytest.approx(np.percentile(expected.risk, 90))
    assert list(q.faithfulness.histogram) == list(np.histogram(expected.faithfulness, bins=10,
                                                               range=(0, 1))[0])

    assert [(d.period, d.magnitude) for d in report.drift_reports] == expected.drift  # by time
    assert {d.period for d in report.drift_reports if d.drift_detected} == {"2026-W42"}

    assert (report.retention.count, len(report.retention.entries)) == (2, 2)
    assert dict(report.retention.by_actor) == {"scheduler": 2}
    details = {e.details["policy"]: e.details for e in report.retention.entries if e.details}
    assert details["audit_events"]["redacted"] == 120
    assert details["audit_events"]["per_tenant"].startswith("<object with 40 keys")
    assert report.legal_holds.count == 1 and report.legal_holds.entries[0].actor == "legal"
    assert report.erasures.count == 1
    assert report.erasures.entries[0].details == {"target": "document", "doc_id": "kyc-7",
                                                  "versions": [1, 2], "chunks_deleted": 4,
                                                  "outcome": "ok"}

    models = {(m.role, m.model, m.before_period): m for m in report.models}
    assert set(models) == {("embedder", "all-MiniLM-L6-v2", False),
                           ("reranker", "ms-marco-MiniLM", True)}  # old-embedder was replaced
    assert models[("embedder", "all-MiniLM-L6-v2", False)].loads == 2
    assert models[("embedder", "all-MiniLM-L6-v2", False)].sha256 == "e" * 64
    assert {(c.sha256[0], c.before_period) for c in report.configs} == {
        ("b", True), ("c", False), ("d", False)}

    a = report.access_denied
    assert (a.count, dict(a.by_actor), dict(a.by_tenant), dict(a.by_operation)) == (
        5, dict(expected.denied_actor), dict(expected.denied_tenant), {"retrieve": 5})
    json.dumps(report.to_dict())  # plain data throughout


async def test_written_report_is_rendered_signed_and_recorded(db: Db, tmp_path: Path,
                                                              signer: CheckpointSigner) -> None:
    config, _ = write_config(tmp_path, db, key=signer, checkpoint_every=100)
    expected = await seed(config)
    out = tmp_path / "out"
    result = await write_monthly_report(config, month="2026-10", out_dir=out, actor="auditor")

    assert result.exit_code == 0 and result.signed and result.key_id == signer.key_id
    assert set(result.files) == {"json", "markdown", "html", "signature"}
    assert Path(result.files["json"]) == out / "compliance-2026-10.json"
    assert Path(result.files["signature"]) == out / "compliance-2026-10.json.sig"
    chain = result.report.chain
    assert chain.last_checkpoint is not None and chain.last_checkpoint.key_id == signer.key_id
    assert chain.last_checkpoint.seq == 100 * (chain.head_seq // 100)
    assert chain.signatures_checked >= 1 and "matched the chain" in chain.anchor_status

    page = text(result.files["html"])
    for title in SECTION_TITLES:
        assert f"<h2>{html.escape(title)}</h2>" in page
    assert page.count("src='data:image/png;base64,") == 4  # events, latency, quality, drift
    assert "src='http" not in page and "<script" not in page
    markdown = text(result.files["markdown"])
    assert all(f"## {title}" in markdown for title in SECTION_TITLES)
    assert f"Total events**: {expected.total:,}" in markdown

    data = json.loads(text(result.files["json"]))
    assert data["total_events"] == expected.total and data["version_updates"] == 7
    assert data["sha256_of_report"] == result.digest and data["signing"]["signed"] is True
    async with ComplianceManager(config) as cm:
        [event] = await cm.query_audit_logs(AuditEventType.COMPLIANCE_REPORT)
    assert event.seq == result.recorded_seq and event.actor == "auditor"
    assert event.payload is not None
    assert event.payload["report_sha256"] == result.digest
    assert event.payload["chain_verified"] is True and event.payload["key_id"] == signer.key_id

    check = verify_report_file(result.files["json"], public_key=signer.public_key_hex)
    assert check.ok and check.signature == "valid" and check.key_pinned
    assert check.report_sha256 == result.digest and check.period == "2026-10"

    path = Path(result.files["json"])
    original = text(path)
    write(path, original.replace(f'"total_events": {expected.total}',
                                 f'"total_events": {expected.total - 1}'))
    edited = verify_report_file(path, public_key=signer.public_key_hex)
    assert not edited.ok and not edited.digest_ok and edited.signature == "invalid"

    # Same content, other bytes: the digest still matches, the signed file does not.
    write(path, json.dumps(json.loads(original)))
    reformatted = verify_report_file(path)
    assert reformatted.digest_ok and reformatted.signature == "invalid" and not reformatted.ok
    assert "differs from the one that was signed" in " ".join(reformatted.problems)

    write(path, original)
    assert verify_report_file(path, public_key=signer.public_key_hex).ok
    other = CheckpointSigner.generate()
    untrusted = verify_report_file(path, public_key=other.public_key_hex)
    assert not untrusted.ok and untrusted.signature == "untrusted_key"


async def test_an_unsigned_report_says_so_and_removes_a_stale_signature(
        tmp_path: Path, signer: CheckpointSigner) -> None:
    db = Db("sqlite", f"sqlite:///{tmp_path / 'data' / 'audit.db'}", None)
    config, _ = write_config(tmp_path, db, key=signer)
    await seed(config)
    signed = await write_monthly_report(config, month="2026-10")
    assert verify_report_file(signed.files["json"]).ok

    unsigned_config, _ = write_config(tmp_path, db)
    result = await write_monthly_report(unsigned_config, month="2026-10")
    assert result.exit_code == 0 and not result.signed and result.key_id is None
    assert result.signing_note.startswith("NOT SIGNED: no signing key configured")
    assert "signature" not in result.files
    assert not exists(signed.files["signature"])  # the old one would vouch for old bytes
    data = json.loads(text(result.files["json"]))
    assert data["signing"]["signed"] is False and "ADVANCED_RAG_AUDIT_SIGNING_KEY" in data[
        "signing"]["reason"]
    assert "NOT SIGNED" in text(result.files["html"])
    check = verify_report_file(result.files["json"])
    assert check.digest_ok and check.signature == "missing" and not check.ok


async def test_a_tampered_chain_exits_4_and_the_report_says_so(db: Db, tmp_path: Path) -> None:
    config, config_path = write_config(tmp_path, db)
    expected = await seed(config)
    ok = run_script("--config", str(config_path), "--month", "2026-10", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "audit chain OK" in ok.stdout and "NOT SIGNED" in ok.stdout

    victim = expected.in_period_seqs[len(expected.in_period_seqs) // 2]
    db.drop_guards()
    db.sql("UPDATE audit_events SET actor = 'someone-else' WHERE seq = ?", (victim,))
    bad = run_script("--config", str(config_path), "--month", "2026-10", cwd=tmp_path)
    assert bad.returncode == EXIT_CHAIN_INVALID == 4, bad.stderr
    assert f"AUDIT CHAIN INVALID at seq {victim}" in bad.stderr

    folder = Path(config.data_dir) / "reports" / "compliance"
    data = json.loads(text(folder / "compliance-2026-10.json"))
    assert data["chain"]["verified"] is False and data["chain"]["failure"]["seq"] == victim
    assert data["notes"][0].startswith("THE AUDIT CHAIN FAILED VERIFICATION")
    page = text(folder / "compliance-2026-10.html")
    assert "AUDIT CHAIN VERIFICATION FAILED" in page and f"at seq {victim}" in page
    assert "> **AUDIT CHAIN VERIFICATION FAILED" in text(folder / "compliance-2026-10.md")
    async with ComplianceManager(config) as cm:
        events = await cm.query_audit_logs(AuditEventType.COMPLIANCE_REPORT)
    assert [e.payload["chain_verified"] for e in events if e.payload] == [True, False]
    assert events[-1].payload is not None and events[-1].payload["chain_failure_seq"] == victim

    with pytest.raises(SchedulerError, match=f"seq {victim}"):
        await run_now("monthly_report", config)
    async with ComplianceManager(config) as cm:
        [failed] = await cm.query_audit_logs(AuditEventType.JOB_FAILED)
    assert failed.payload is not None and failed.payload["error"] == "AuditIntegrityError"


async def test_the_scheduled_job_writes_the_last_full_month(db: Db, tmp_path: Path) -> None:
    config, _ = write_config(tmp_path, db)
    expected = await seed(config)
    summary = await scheduled_monthly_report(config, now=datetime(2026, 11, 1, 3, tzinfo=UTC))
    assert summary["period"] == "2026-10" and summary["chain_verified"] is True
    assert summary["total_events"] == expected.total and summary["signed"] is False
    assert exists(summary["files"]["html"])

    job = await run_now("monthly_report", config)  # wired into the scheduler, audited
    assert job["period"] == last_full_month(datetime.now(UTC))
    async with ComplianceManager(config) as cm:
        [finished] = await cm.query_audit_logs(AuditEventType.JOB_FINISHED)
        reports = await cm.query_audit_logs(AuditEventType.COMPLIANCE_REPORT)
    assert finished.payload is not None and finished.payload["summary"] == job
    assert [r.payload["period"] for r in reports if r.payload] == ["2026-10", job["period"]]
