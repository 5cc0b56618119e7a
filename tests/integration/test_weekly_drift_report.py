"""The weekly drift report end to end on a real SQLite audit database: query-log rows for a
reference week and a current week, the report files, the audit event and the exit codes of
scripts/weekly_drift_report.py. Rows are written through the store the pipeline uses; the
embeddings are synthetic so the drift is known."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from advanced_rag.config import validate_config
from advanced_rag.drift.monitor import DriftMonitor
from advanced_rag.drift.store import DriftStore, QueryLogEntry
from advanced_rag.drift.weekly import iso_week, last_full_week, weekly_report
from advanced_rag.errors import InputError
from compliance.audit import AuditEventType
from compliance.manager import ComplianceManager

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
DIM = 16


def entries(start: datetime, n: int, *, shift: float, seed: int) -> list[QueryLogEntry]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM))
    vectors[:, 0] += shift
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [QueryLogEntry(event_id=f"{seed}-{i}", created_at=start + timedelta(minutes=10 * i),
                          tenant="bank-a", search_type="hybrid", embedding=vectors[i], hits=5,
                          top_fused=float(rng.uniform(0.4, 0.9) - shift / 10))
            for i in range(n)]


def read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def settings(tmp_path: Path) -> dict[str, object]:
    return {"data_dir": str(tmp_path), "drift": {"permutations": 200, "min_reference": 50,
                                                 "min_current": 30}}


async def prepare(tmp_path: Path, *, shift: float, current: int = 120) -> None:
    config = validate_config(settings(tmp_path))
    reference_start, _ = iso_week("2026-W45")
    current_start, _ = iso_week("2026-W47")
    async with DriftStore.from_config(config) as store:
        await asyncio.to_thread(store.write_entries, entries(reference_start, 150, shift=0, seed=1))
        await asyncio.to_thread(store.write_entries,
                                entries(current_start, current, shift=shift, seed=2))
        await DriftMonitor(store, config.drift).capture_reference(
            "default", start=reference_start, end=reference_start + timedelta(days=7), actor="ops")


def test_iso_weeks() -> None:
    start, end = iso_week("2026-W47")
    assert start == datetime(2026, 11, 16, tzinfo=UTC) and end - start == timedelta(days=7)
    assert last_full_week(datetime(2026, 11, 22, 12, tzinfo=UTC)) == "2026-W46"
    assert last_full_week(datetime(2026, 11, 23, 0, 1, tzinfo=UTC)) == "2026-W47"
    with pytest.raises(InputError, match="ISO week"):
        iso_week("2026-47")


async def test_shifted_week_is_reported_as_drift_with_files_and_an_audit_event(
        tmp_path: Path) -> None:
    await prepare(tmp_path, shift=1.5)
    config = validate_config(settings(tmp_path))
    result = await weekly_report(config, week="2026-W47", actor="cron")
    assert result.report.drift_detected and result.exit_code == 3
    data = json.loads(read(result.files["json"]))
    assert data["report"]["drift_detected"] is True and data["period"] == "2026-W47"
    assert data["sha256_of_report"] == result.digest
    unsigned = {k: v for k, v in data.items() if k != "sha256_of_report"}
    canonical = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == result.digest
    page = read(result.files["html"])
    assert page.count("data:image/png;base64,") >= 3 and "Drift detected" in page
    markdown = read(result.files["markdown"])
    assert "| query |" in markdown and "2026-W47" in markdown
    async with ComplianceManager(config) as cm:
        [event] = await cm.query_audit_logs(AuditEventType.DRIFT_REPORT)
        verified = await cm.verify_audit_log(record=False)
    assert event.actor == "cron" and event.payload is not None
    assert event.payload["report_sha256"] == result.digest and event.payload["period"] == "2026-W47"
    assert verified.events_checked == 1  # the report (verification raises if the chain broke)


async def test_same_distribution_and_too_little_data(tmp_path: Path) -> None:
    await prepare(tmp_path / "same", shift=0.0)
    same = await weekly_report(validate_config(settings(tmp_path / "same")), week="2026-W47")
    assert not same.report.drift_detected and same.exit_code == 0
    await prepare(tmp_path / "small", shift=1.5, current=10)
    small = await weekly_report(validate_config(settings(tmp_path / "small")), week="2026-W47")
    assert str(small.report.status) == "insufficient_data" and not small.report.tests
    assert small.exit_code == 0 and "10" in (small.report.reason or "")


def run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(settings(tmp_path)), encoding="utf-8")
    return subprocess.run([sys.executable, str(REPO / "scripts" / "weekly_drift_report.py"),
                           "--config", str(path), *args], capture_output=True, text=True,
                          timeout=300)


async def test_script_exit_codes(tmp_path: Path) -> None:
    await prepare(tmp_path / "drift", shift=1.5)
    drifted = run_script(tmp_path / "drift", "--week", "2026-W47")
    assert drifted.returncode == 3, drifted.stderr
    assert "html:" in drifted.stdout
    missing = run_script(tmp_path / "none", "--week", "2026-W47")  # no reference captured
    assert missing.returncode == 1 and "no drift reference" in missing.stderr
    bad = run_script(tmp_path / "drift", "--week", "last-week")
    assert bad.returncode == 1 and "ISO week" in bad.stderr


async def test_the_scheduler_job_writes_the_report_and_audits_both(tmp_path: Path) -> None:
    from compliance.scheduling import run_now

    await prepare(tmp_path, shift=1.5)
    config = validate_config(settings(tmp_path))
    summary = await run_now("weekly_drift", config)  # the last full week, whatever today is
    assert summary["period"] == last_full_week(datetime.now(UTC))
    assert summary["reference"] == "default" and read(summary["files"]["json"])
    async with ComplianceManager(config) as cm:
        [report] = await cm.query_audit_logs(AuditEventType.DRIFT_REPORT)
        [finished] = await cm.query_audit_logs(AuditEventType.JOB_FINISHED)
    assert report.actor == "scheduler" and report.payload is not None
    assert finished.payload is not None
    assert report.payload["report_sha256"] == summary["report_sha256"]
    assert finished.payload["summary"]["report_sha256"] == summary["report_sha256"]
