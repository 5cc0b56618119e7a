"""scripts/analyze_performance.py and ``advanced-rag report …`` as real processes, against the
seeded month; expected figures come from the seeded latencies."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from compliance.audit import CheckpointSigner

from .conftest import PYTHON, REPO, TARGET_MS, Db, Expected, child_env, seed, write_config

pytestmark = pytest.mark.integration

SCRIPT = REPO / "scripts" / "analyze_performance.py"
CLI = [PYTHON, "-m", "advanced_rag.cli"]
PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    return path.read_bytes().startswith(PNG) and path.stat().st_size > 10_000


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=child_env())


def weekly_totals(expected: Expected) -> dict[str, list[float]]:
    weeks: dict[str, list[float]] = defaultdict(list)
    for when, total in expected.totals:
        year, week, _ = when.isocalendar()
        weeks[f"{year}-W{week:02d}"].append(total)
    return weeks


def total_rows(stdout: str) -> dict[str, list[str]]:
    """PERIOD -> the columns of its ``total`` row."""
    rows = [line.split() for line in stdout.splitlines()]
    return {row[0]: row for row in rows if len(row) > 2 and row[1] == "total"}


async def test_performance_script_prints_weekly_table_and_writes_png(db: Db,
                                                                      tmp_path: Path) -> None:
    config, config_path = write_config(tmp_path, db)
    expected = await seed(config)
    chart = tmp_path / "latency.png"
    out = run([PYTHON, str(SCRIPT), "--config", str(config_path), "--period", "weekly",
               "--from", "2026-10-01", "--to", "2026-11-01", "--output", str(chart)], tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["PERIOD", "STAGE", "N", "P50", "MS", "P95", "MS", "P99", "MS",
                                "SLA", "MET"]
    rows = total_rows(out.stdout)
    weeks = weekly_totals(expected)
    assert set(rows) == {"2026-W40", "2026-W41", "2026-W42", "2026-W43", "2026-W44", "overall"}
    for week, totals in weeks.items():
        row = rows[week]
        assert int(row[2]) == len(totals)
        assert float(row[3]) == pytest.approx(np.percentile(totals, 50), abs=0.051)
        assert float(row[5]) == pytest.approx(np.percentile(totals, 99), abs=0.051)
        met = sum(t <= TARGET_MS for t in totals)
        assert float(row[6]) == pytest.approx(100 * met / len(totals), abs=0.006)
    assert int(rows["overall"][2]) == len(expected.totals)
    assert f"({expected.retrieval_errors} failed)" in " ".join(rows["overall"])
    assert is_png(chart)
    assert out.stdout.rstrip().endswith(f"chart: {chart}")


async def test_performance_daily_json_and_default_chart_path(tmp_path: Path) -> None:
    db = Db("sqlite", f"sqlite:///{tmp_path / 'data' / 'audit.db'}", None)
    config, config_path = write_config(tmp_path, db)
    expected = await seed(config)
    out = run([*CLI, "report", "performance", "--config", str(config_path), "--period", "daily",
               "--from", "2026-10-01", "--to", "2026-11-01", "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [b["label"] for b in data["buckets"]] == [f"2026-10-{d:02d}" for d in range(1, 32)]
    days: dict[str, int] = defaultdict(int)
    for when, _ in expected.totals:
        days[f"{when:%Y-%m-%d}"] += 1
    assert {b["label"]: b["requests"] for b in data["buckets"] if b["requests"]} == dict(days)
    chart = Path(data["chart"])
    assert chart == Path(config.data_dir) / "reports" / "performance" / \
        "performance-daily-20261001-20261101.png"
    assert is_png(chart)

    bad = run([*CLI, "report", "performance", "--config", str(config_path), "--from",
               "2026-11-01", "--to", "2026-10-01"], tmp_path)
    assert bad.returncode == 2 and "range is empty" in bad.stderr


async def test_cli_monthly_and_verify(tmp_path: Path, signer: CheckpointSigner) -> None:
    db = Db("sqlite", f"sqlite:///{tmp_path / 'data' / 'audit.db'}", None)
    config, config_path = write_config(tmp_path, db, key=signer)
    expected = await seed(config)
    out_dir = tmp_path / "reports"
    out = run([*CLI, "report", "monthly", "--config", str(config_path), "--month", "2026-10",
               "--out-dir", str(out_dir), "--actor", "auditor"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"period 2026-10: {expected.total:,} events" in out.stdout
    assert f"signed with key {signer.key_id}" in out.stdout
    report = out_dir / "compliance-2026-10.json"
    verify = [*CLI, "report", "verify", str(report), "--config", str(config_path),
              "--public-key", signer.public_key_hex, "--audit-log"]
    ok = run(verify, tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK" in ok.stdout.splitlines()[0] and "recorded at seq" in ok.stdout

    data = json.loads(report.read_text(encoding="utf-8"))
    data["access_denied"]["count"] = 0  # hide the denials, recompute the digest, keep the .sig
    from compliance.reports import content_digest

    data["sha256_of_report"] = content_digest({k: v for k, v in data.items()
                                               if k != "sha256_of_report"})
    report.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    forged = run([*verify, "--json"], tmp_path)
    assert forged.returncode == 1
    result = json.loads(forged.stdout)
    assert result["digest_ok"] is True and result["signature"] == "invalid"
    assert result["audit_log_seq"] is None  # and no audit event records the forged digest

    bad_month = run([*CLI, "report", "monthly", "--config", str(config_path), "--month",
                     "2026-13"], tmp_path)
    assert bad_month.returncode == 2 and "2026-13" in bad_month.stderr
