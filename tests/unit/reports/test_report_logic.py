"""Pure pieces of compliance.reports: calendar periods, buckets, latency extraction, signing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from advanced_rag.config import AuditSettings
from advanced_rag.errors import InputError
from compliance.audit import CheckpointSigner
from compliance.reports import ReportSigner, content_digest, verify_report_file
from compliance.reports.collect import resolve_period, retrieval_timing
from compliance.reports.monthly import last_full_month, month_bounds
from compliance.reports.performance import bucket_bounds, default_range


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_month_bounds_and_last_full_month() -> None:
    assert month_bounds("2026-10") == (utc(2026, 10, 1), utc(2026, 11, 1))
    assert month_bounds("2026-12") == (utc(2026, 12, 1), utc(2027, 1, 1))
    for bad in ("2026-13", "2026-1", "26-10", "October", "2026-10-01"):
        with pytest.raises(InputError):
            month_bounds(bad)
    assert last_full_month(utc(2026, 11, 1, 0, 0)) == "2026-10"
    assert last_full_month(utc(2027, 1, 15)) == "2026-12"
    # 00:30 on 1 November in Berlin is still 31 October in UTC
    from zoneinfo import ZoneInfo
    assert last_full_month(datetime(2026, 11, 1, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))) == "2026-09"


def test_resolve_period() -> None:
    assert resolve_period(date(2026, 10, 1), date(2026, 10, 8)) == (
        utc(2026, 10, 1), utc(2026, 10, 8), "2026-10-01..2026-10-08")
    assert resolve_period(None, None, now=utc(2026, 3, 2)) == (utc(2026, 2, 1), utc(2026, 3, 1),
                                                               "2026-02")
    with pytest.raises(InputError, match="naive"):
        resolve_period(datetime(2026, 10, 1), utc(2026, 11, 1))
    with pytest.raises(InputError, match="both"):
        resolve_period(date(2026, 10, 1), None)
    with pytest.raises(InputError, match="after"):
        resolve_period(date(2026, 10, 2), date(2026, 10, 1))


def test_buckets_are_calendar_aligned_and_clipped() -> None:
    weeks = bucket_bounds("weekly", utc(2026, 10, 1), utc(2026, 11, 1))
    assert [w[0] for w in weeks] == ["2026-W40", "2026-W41", "2026-W42", "2026-W43", "2026-W44"]
    assert weeks[0][1:] == (utc(2026, 10, 1), utc(2026, 10, 5))
    assert weeks[-1][1:] == (utc(2026, 10, 26), utc(2026, 11, 1))
    months = bucket_bounds("monthly", utc(2026, 11, 15), utc(2027, 2, 1))
    assert [m[0] for m in months] == ["2026-11", "2026-12", "2027-01"]
    assert len(bucket_bounds("daily", utc(2026, 10, 1, 12), utc(2026, 10, 3))) == 2
    with pytest.raises(InputError):
        bucket_bounds("hourly", utc(2026, 10, 1), utc(2026, 11, 1))  # type: ignore[arg-type]
    assert default_range("daily", utc(2026, 11, 22, 2)) == (utc(2026, 10, 23), utc(2026, 11, 22))
    assert default_range("weekly", utc(2026, 11, 22)) == (utc(2026, 8, 24), utc(2026, 11, 16))
    assert default_range("monthly", utc(2026, 11, 22)) == (utc(2025, 11, 1), utc(2026, 11, 1))


def test_retrieval_timing() -> None:
    assert retrieval_timing({"latency_ms": {"embed": 10.0, "search": 20.5}}) == (
        {"embed": 10.0, "search": 20.5}, 30.5, False)
    assert retrieval_timing({"latency_ms": {"search": 5.0, "total": 9.0}}) == ({"search": 5.0},
                                                                               9.0, True)
    assert retrieval_timing({"latency_ms": 1200.0}) == ({}, 1200.0, True)  # a failed call
    assert retrieval_timing({"latency_ms": {"search": "fast", "embed": True}}) == ({}, None, False)
    assert retrieval_timing({}) == ({}, None, False)


def test_signature_round_trip_and_key_id_matches_the_checkpoint_signer(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch
                                                                       ) -> None:
    key = CheckpointSigner.generate()
    pem = tmp_path / "k.pem"
    key.save(pem)
    from_file = ReportSigner.from_settings(AuditSettings(signing_key_file=str(pem)))
    assert from_file is not None and from_file.key_id == key.key_id
    assert "PRIVATE" not in repr(from_file)
    monkeypatch.setenv("REPORT_TEST_KEY", pem.read_text())
    from_env = ReportSigner.from_settings(AuditSettings(signing_key_env="REPORT_TEST_KEY"))
    assert from_env is not None and from_env.public_key_hex == key.public_key_hex
    monkeypatch.delenv("REPORT_TEST_KEY")
    assert ReportSigner.from_settings(AuditSettings(signing_key_env="REPORT_TEST_KEY")) is None

    data = {"period": "2026-10", "total_events": 3}
    report = tmp_path / "r.json"
    report.write_text(json.dumps({**data, "sha256_of_report": content_digest(data)}))
    from_file.sign_file(report)
    assert verify_report_file(report, public_key=key.public_key_hex).ok
    sig = tmp_path / "r.json.sig"
    body = json.loads(sig.read_text())
    body["signature"] = body["signature"][:-2] + ("00" if body["signature"][-2:] != "00" else "11")
    sig.write_text(json.dumps(body))
    assert verify_report_file(report).signature == "invalid"
