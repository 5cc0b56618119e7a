"""The scheduler: jobs in the real APScheduler job store, audited runs, the single-scheduler lock.

Tests taking ``db`` run on a SQLite file and (with ``AUDIT_TEST_POSTGRES_URL`` set) on a fresh
PostgreSQL schema. Lock rows and job-store rows are read and written behind the library's back
on plain driver connections; the lock is exercised by real ``advanced-rag scheduler run``
processes stopped with real signals.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from advanced_rag.config import PipelineConfig, load_config, validate_config
from advanced_rag.errors import ConfigError
from compliance.audit.models import AuditEventType, AuditRecord
from compliance.errors import SchedulerError, SchedulerLockedError
from compliance.manager import ComplianceManager
from compliance.scheduling import (
    SchedulerLock,
    cron_trigger,
    list_jobs,
    run_now,
    run_scheduler,
)
from tests.integration.audit.conftest import Backend, _postgres

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "advanced_rag.cli"]
RETENTION_CLASSES = {"audit_events", "query_log", "drift_snapshots", "report_files"}


def nothing_due(summary: dict[str, Any], now: datetime | None = None) -> None:
    """The summary of a real retention run over a database with nothing old enough to go."""
    assert summary["status"] == "applied" and summary["selected"] == 0
    assert set(summary["classes"]) == RETENTION_CLASSES
    assert all(c["done"] == 0 and c["error"] is None for c in summary["classes"].values())
    assert summary["plan_event_id"]
    if now is not None:  # the job's policy clock is the scheduled time
        assert summary["now"] == now.isoformat()


async def exploding_target(config: PipelineConfig, *, now: datetime) -> dict[str, Any]:
    """A job target that fails the way a real one can."""
    raise RuntimeError(f"disk on fire at {now:%Y}")


# -- databases --------------------------------------------------------------------------------


class Db(Backend):
    """The scheduler's database (the audit database), and raw SQL behind its back."""

    @property
    def audit(self) -> dict[str, Any]:
        return {} if self.name == "sqlite" else {"url": self.url, "schema": self.schema}

    def timestamp(self, moment: datetime) -> Any:
        """``moment`` as the lock table stores it (naive-UTC text on SQLite)."""
        if self.name == "sqlite":
            return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return moment

    def lock_row(self) -> tuple[Any, ...] | None:
        try:
            rows = self.sql("SELECT holder, expires_at FROM scheduler_lock")
        except Exception:  # table not created yet
            return None
        return rows[0] if rows else None

    def config(self, tmp_path: Path, **scheduler: Any) -> dict[str, Any]:
        return {"data_dir": str(tmp_path / "data"), "audit": dict(self.audit),
                "scheduler": {"lock_ttl_s": 10, **scheduler}}

    def config_file(self, tmp_path: Path, **scheduler: Any) -> tuple[PipelineConfig, Path]:
        """A config file (scheduled runs reload their config from it) and what it holds."""
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(self.config(tmp_path, **scheduler)), encoding="utf-8")
        return load_config(path), path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        yield Db("sqlite", f"sqlite:///{tmp_path / 'data' / 'audit.db'}", None)
        return
    with _postgres("sched_t", Db) as pg:
        yield pg


def stored_jobs(db: Db) -> dict[str, Any]:
    """The jobs as APScheduler itself reads them back from the job store."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    store = SQLAlchemyJobStore(url=db.url, tableschema=db.schema)
    store.start(BackgroundScheduler(), "default")
    try:
        return {job.id: job for job in store.get_all_jobs()}
    finally:
        store.shutdown()


def jobs_once(db: Db, ids: set[str]) -> dict[str, Any] | None:
    """The stored jobs once they are exactly ``ids`` (the scheduler registers them just after
    taking its lock)."""
    jobs = stored_jobs(db)
    return jobs if set(jobs) == ids else None


async def move_next_run(db: Db, job_id: str, when: datetime) -> None:
    """Make a stored job due at ``when``, through APScheduler's own API (a scheduler that is
    paused throughout, so it never runs or reschedules anything itself)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    scheduler = AsyncIOScheduler(
        jobstores={"default": SQLAlchemyJobStore(url=db.url, tableschema=db.schema)})
    scheduler.start(paused=True)
    try:
        scheduler.modify_job(job_id, next_run_time=when)
    finally:
        scheduler.shutdown()
        await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the loop's next turn
    assert stored_jobs(db)[job_id].next_run_time == when


async def wait_for(predicate: Any, seconds: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def events(config: PipelineConfig, kind: AuditEventType) -> list[AuditRecord]:
    async with ComplianceManager(config) as cm:
        return await cm.query_audit_logs(event_type=kind, limit=1000)


async def verify(config: PipelineConfig) -> int:
    async with ComplianceManager(config) as cm:
        report = await cm.verify_audit_log(record=False)
    return report.events_checked


# -- triggers and listing ---------------------------------------------------------------------


@pytest.mark.parametrize(("field", "expected"), [
    ("1", "mon"), ("0", "sun"), ("7", "sun"), ("1-5", "mon,tue,wed,thu,fri"),
    ("mon-fri", "mon,tue,wed,thu,fri"), ("*/2", "tue,thu,sat,sun"), ("sat,sun", "sat,sun"),
    ("0-6", "*"), ("*", "*")])
def test_crontab_day_of_week_means_what_crontab_means(field: str, expected: str) -> None:
    trigger = cron_trigger(f"0 6 * * {field}", "UTC")
    fields = {f.name: str(f) for f in trigger.fields}
    assert fields["day_of_week"] == expected


@pytest.mark.parametrize("cron", ["0 6 * *", "61 6 * * *", "0 6 * * 8", "0 6 * * 5-1"])
def test_bad_cron_is_a_config_error_naming_the_key(cron: str) -> None:
    config = validate_config({"scheduler": {"weekly_drift": {"cron": "0 6 * * mon"},
                                            "retention": {"cron": "0 2 * * *"}}})
    config = config.model_copy(update={"scheduler": config.scheduler.model_copy(
        update={"retention": config.scheduler.retention.model_copy(update={"cron": cron})})})
    with pytest.raises(ConfigError) as info:
        list_jobs(config)
    assert "scheduler.retention.cron" in str(info.value)


def test_list_jobs_next_run_times_for_a_fixed_config() -> None:
    config = validate_config({"scheduler": {
        "timezone": "America/New_York",
        "weekly_drift": {"cron": "0 6 * * 1"},  # crontab 1 = Monday (APScheduler's 1 = Tuesday)
        "retention": {"cron": "30 2 * * *"},
        "monthly_report": {"cron": "0 3 1 * *", "enabled": False}}})
    now = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)  # a Wednesday, 07:00 in New York (EST)
    jobs = {job.id: job for job in list_jobs(config, now=now)}
    assert list(jobs) == ["weekly_drift", "retention", "monthly_report"]
    weekly, retention, monthly = jobs["weekly_drift"], jobs["retention"], jobs["monthly_report"]
    assert (weekly.cron, weekly.timezone, weekly.enabled) == ("0 6 * * 1", "America/New_York", True)
    assert weekly.next_run_time == datetime(2026, 1, 12, 11, 0, tzinfo=UTC)  # Mon 06:00 EST
    assert weekly.next_run_time.strftime("%A %H:%M %Z") == "Monday 06:00 EST"
    assert retention.next_run_time == datetime(2026, 1, 8, 7, 30, tzinfo=UTC)
    assert (monthly.enabled, monthly.next_run_time) == (False, None)
    defaults = {job.id: job.next_run_time for job in list_jobs(PipelineConfig(), now=now)}
    assert defaults == {"weekly_drift": datetime(2026, 1, 12, 6, 0, tzinfo=UTC),
                        "retention": datetime(2026, 1, 8, 2, 0, tzinfo=UTC),
                        "monthly_report": datetime(2026, 2, 1, 3, 0, tzinfo=UTC)}


async def test_scheduler_refuses_a_config_its_runs_would_not_reload(tmp_path: Path) -> None:
    config = validate_config({"data_dir": str(tmp_path / "data")})
    with pytest.raises(SchedulerError, match="built-in defaults"):
        await run_scheduler(config, None)
    path = tmp_path / "config.yaml"
    path.write_text("scheduler:\n  timezone: Europe/Paris\n", encoding="utf-8")
    with pytest.raises(SchedulerError, match="config.yaml"):
        await run_scheduler(config, path)
    assert not (tmp_path / "data").exists()  # refused before touching any database


async def test_unknown_job_lists_the_valid_ids() -> None:
    with pytest.raises(SchedulerError) as info:
        await run_now("retention_v2", PipelineConfig())
    assert "weekly_drift, retention, monthly_report" in str(info.value)


# -- jobs in the job store -----------------------------------------------------------------------


async def test_scheduler_registers_jobs_in_the_job_store(db: Db, tmp_path: Path) -> None:
    config, path = db.config_file(
        tmp_path, timezone="Europe/Berlin", misfire_grace_s=120,
        weekly_drift={"cron": "30 5 * * 1"}, retention={"cron": "15 2 * * *"},
        monthly_report={"cron": "0 3 1 * *", "enabled": False})
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(config, path, stop=stop))
    row = await wait_for(db.lock_row, what="the scheduler lock")
    assert row[0] == f"{socket.gethostname()}:{os.getpid()}"
    expected = {job.id: job.next_run_time for job in list_jobs(config) if job.enabled}
    assert set(expected) == {"weekly_drift", "retention"}
    jobs = await wait_for(lambda: jobs_once(db, set(expected)), what="the jobs")
    for job_id, job in jobs.items():
        assert job.func_ref == "compliance.scheduling:run_job"
        assert tuple(job.args) == (job_id, str(path.resolve())) and job.kwargs == {}
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, 120)
        assert str(job.trigger.timezone) == "Europe/Berlin"
        assert job.next_run_time == expected[job_id]
    fields = {f.name: str(f) for f in jobs["weekly_drift"].trigger.fields}
    assert (fields["minute"], fields["hour"], fields["day"], fields["month"],
            fields["day_of_week"]) == ("30", "5", "*", "*", "mon")
    fields = {f.name: str(f) for f in jobs["retention"].trigger.fields}
    assert (fields["minute"], fields["hour"], fields["day_of_week"]) == ("15", "2", "*")
    stop.set()
    await asyncio.wait_for(task, 15)
    assert db.lock_row() is None  # released on a clean stop
    assert set(stored_jobs(db)) == {"weekly_drift", "retention"}  # the store persists

    # Disable one, enable another: the store follows the config at the next start.
    config, path = db.config_file(
        tmp_path, timezone="Europe/Berlin", misfire_grace_s=120,
        weekly_drift={"cron": "30 5 * * 1", "enabled": False}, retention={"cron": "15 2 * * *"},
        monthly_report={"cron": "0 3 1 * *"})
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(config, path, stop=stop))
    await wait_for(db.lock_row, what="the scheduler lock")
    jobs = await wait_for(lambda: jobs_once(db, {"retention", "monthly_report"}),
                          what="the jobs")
    stop.set()
    await asyncio.wait_for(task, 15)
    assert tuple(jobs["monthly_report"].args) == ("monthly_report", str(path.resolve()))
    assert {f.name: str(f) for f in jobs["monthly_report"].trigger.fields}["day"] == "1"


async def test_a_run_due_while_down_is_caught_up_or_recorded_as_missed(db: Db,
                                                                       tmp_path: Path) -> None:
    # A daily time 12 h away: no natural run falls inside the windows moved below, whatever
    # the time of day the test runs at.
    far = {"cron": f"0 {(datetime.now(UTC).hour + 12) % 24} * * *"}
    config, path = db.config_file(tmp_path, misfire_grace_s=3600, retention=far)
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(config, path, stop=stop))
    await wait_for(db.lock_row, what="the scheduler lock")
    stop.set()
    await asyncio.wait_for(task, 15)

    # Due 10 minutes ago, within the grace time: the next scheduler runs it at once.
    due = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    await move_next_run(db, "retention", due)
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(config, path, stop=stop))
    finished = await wait_for(lambda: events(config, AuditEventType.JOB_FINISHED),
                              what="job_finished")
    stop.set()
    await asyncio.wait_for(task, 15)
    [started] = await events(config, AuditEventType.JOB_STARTED)
    assert started.payload is not None and finished[0].payload is not None
    assert started.payload["trigger"] == "schedule"
    assert started.payload["scheduled_at"] == due.isoformat()
    nothing_due(finished[0].payload["summary"], due)
    assert finished[0].parent_event_id == started.event_id
    assert stored_jobs(db)["retention"].next_run_time > datetime.now(UTC)

    # Due two hours ago with a one-minute grace: not run, recorded as missed.
    config, path = db.config_file(tmp_path, misfire_grace_s=60, retention=far)
    await move_next_run(db, "retention", due - timedelta(hours=2))
    stop = asyncio.Event()
    task = asyncio.create_task(run_scheduler(config, path, stop=stop))
    [missed] = await wait_for(lambda: events(config, AuditEventType.JOB_FAILED),
                              what="the missed run")
    stop.set()
    await asyncio.wait_for(task, 15)
    assert missed.payload is not None
    assert (missed.payload["job_id"], missed.payload["outcome"]) == ("retention", "missed")
    assert missed.payload["scheduled_at"] == (due - timedelta(hours=2)).isoformat()
    assert len(await events(config, AuditEventType.JOB_STARTED)) == 1
    assert await verify(config) == 5  # started, retention plan + outcome, finished, missed


# -- audited runs ---------------------------------------------------------------------------------


async def test_run_now_retention_is_audited(db: Db, tmp_path: Path) -> None:
    config = validate_config(db.config(tmp_path))
    summary = await run_now("retention", config, None)
    nothing_due(summary)
    [started] = await events(config, AuditEventType.JOB_STARTED)
    [finished] = await events(config, AuditEventType.JOB_FINISHED)
    assert started.actor == finished.actor == "scheduler"
    assert started.payload is not None and finished.payload is not None
    assert started.payload["job_id"] == finished.payload["job_id"] == "retention"
    assert started.payload["trigger"] == "manual" and started.payload["scheduled_at"] is None
    assert started.payload["pid"] == os.getpid()
    assert started.payload["host"] == socket.gethostname()
    assert datetime.fromisoformat(started.payload["started_at"]) <= finished.occurred_at
    assert finished.parent_event_id == started.event_id and finished.seq == started.seq + 3
    plan, outcome = await events(config, AuditEventType.RETENTION)  # the job's own record
    assert plan.seq == started.seq + 1 and outcome.parent_event_id == plan.event_id
    assert plan.event_id == summary["plan_event_id"]
    assert finished.payload["summary"] == summary
    assert finished.payload["duration_s"] >= 0
    assert await events(config, AuditEventType.JOB_FAILED) == []
    assert await verify(config) == 4


async def test_a_failing_job_is_recorded_as_job_failed(db: Db, tmp_path: Path) -> None:
    config = validate_config(db.config(tmp_path))
    missing = "advanced_rag.drift.no_such_module:scheduled_weekly_report"
    with pytest.raises(SchedulerError, match="cannot import job target") as info:
        await run_now("weekly_drift", config, None, target=missing)
    assert "no_such_module" in str(info.value)
    with pytest.raises(SchedulerError, match="RuntimeError: disk on fire") as raised:
        await run_now("retention", config, None,
                      target="tests.integration.test_scheduler:exploding_target")
    assert isinstance(raised.value.__cause__, RuntimeError)

    started = await events(config, AuditEventType.JOB_STARTED)
    failed = await events(config, AuditEventType.JOB_FAILED)
    assert await events(config, AuditEventType.JOB_FINISHED) == []
    assert [f.parent_event_id for f in failed] == [s.event_id for s in started]
    assert failed[0].payload is not None and failed[1].payload is not None
    assert failed[0].payload["job_id"] == "weekly_drift"
    assert failed[0].payload["error"] == "SchedulerError"
    assert "No module named 'advanced_rag.drift.no_such_module'" in failed[0].payload["message"]
    assert failed[1].payload["error"] == "RuntimeError"
    assert failed[1].payload["message"].startswith("disk on fire")
    assert failed[1].payload["target"] == "tests.integration.test_scheduler:exploding_target"
    assert await verify(config) == 4


# -- the lock -----------------------------------------------------------------------------------


async def test_lock_refuses_a_second_holder_and_is_taken_over_once_expired(
        db: Db, tmp_path: Path) -> None:
    config = validate_config(db.config(tmp_path))
    first = SchedulerLock.for_config(config, holder="host-a:1")
    second = SchedulerLock.for_config(config, holder="host-b:2")
    try:
        await first.install()
        expires = await first.acquire()
        with pytest.raises(SchedulerLockedError) as info:
            await second.acquire()
        assert info.value.holder == "host-a:1" and "host-a:1" in str(info.value)
        assert abs(info.value.expires_at - expires) < timedelta(seconds=1)
        assert not await second.release()  # only the holder can release
        assert await first.renew()
        state = await first.state()
        assert state is not None and state.holder == "host-a:1" and state.expires_at >= expires
        assert await first.release()
        assert await first.state() is None
        await second.acquire()
        assert await second.release()

        # A crashed scheduler's row, already expired: taken over, and the ghost cannot renew.
        past = datetime.now(UTC) - timedelta(minutes=5)
        db.sql("INSERT INTO scheduler_lock (name, holder, token, acquired_at, expires_at) "
               "VALUES ('scheduler', 'ghost:4242', 'ghost', ?, ?)",
               (db.timestamp(past - timedelta(minutes=2)), db.timestamp(past)))
        await first.acquire()
        state = await first.state()
        assert state is not None and state.holder == "host-a:1"
        assert db.sql("SELECT token FROM scheduler_lock") == [(first.token,)]
        assert await first.release()

        # A live row of another scheduler: refused, naming it.
        future = datetime.now(UTC) + timedelta(minutes=5)
        db.sql("INSERT INTO scheduler_lock (name, holder, token, acquired_at, expires_at) "
               "VALUES ('scheduler', 'ghost:4242', 'ghost', ?, ?)",
               (db.timestamp(datetime.now(UTC)), db.timestamp(future)))
        with pytest.raises(SchedulerLockedError, match="ghost:4242"):
            await first.acquire()
        assert not await first.renew()
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("expired_row", [False, True])
async def test_lock_has_one_winner_under_concurrency(db: Db, tmp_path: Path,
                                                     expired_row: bool) -> None:
    config = validate_config(db.config(tmp_path))
    locks = [SchedulerLock.for_config(config, holder=f"racer:{i}") for i in range(8)]
    try:
        await locks[0].install()
        if expired_row:
            past = datetime.now(UTC) - timedelta(minutes=1)
            db.sql("INSERT INTO scheduler_lock (name, holder, token, acquired_at, expires_at) "
                   "VALUES ('scheduler', 'ghost:1', 'ghost', ?, ?)",
                   (db.timestamp(past), db.timestamp(past)))
        for lock in locks:  # connect first, so that the acquisitions really overlap
            await lock.state()
        results = await asyncio.gather(*(lock.acquire() for lock in locks),
                                       return_exceptions=True)
        winners = [lock for lock, result in zip(locks, results, strict=True)
                   if isinstance(result, datetime)]
        assert len(winners) == 1, results
        assert all(isinstance(r, SchedulerLockedError) and r.holder == winners[0].holder
                   for r in results if not isinstance(r, datetime))
        assert db.sql("SELECT holder, token FROM scheduler_lock") == [
            (winners[0].holder, winners[0].token)]
    finally:
        for lock in locks:
            await lock.close()


# -- the command -------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stream:
        return subprocess.Popen([*CLI, "scheduler", "run", "--config", str(config)],
                                cwd=config.parent, stdout=stream, stderr=stream, env=_env())


async def _holding(db: Db, process: subprocess.Popen[bytes], log: Path) -> None:
    def held() -> bool:
        assert process.poll() is None, log.read_text()
        row = db.lock_row()
        return row is not None and row[0] == f"{socket.gethostname()}:{process.pid}"
    await wait_for(held, seconds=30, what="the scheduler process to take the lock")


async def test_second_scheduler_process_refuses_while_the_first_runs(db: Db,
                                                                     tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(db.config(tmp_path)), encoding="utf-8")
    first = _start(config, tmp_path / "first.log")
    try:
        await _holding(db, first, tmp_path / "first.log")
        second = await asyncio.to_thread(
            subprocess.run, [*CLI, "scheduler", "run", "--config", str(config)], cwd=tmp_path,
            capture_output=True, text=True, timeout=60, env=_env())
        assert second.returncode == 1, second.stderr
        message = second.stderr.strip().splitlines()
        assert message == [message[-1]] and message[0].startswith("error: another scheduler")
        assert f"{socket.gethostname()}:{first.pid}" in message[0]
        assert "expires at" in message[0]
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, (tmp_path / "first.log").read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert db.lock_row() is None
    assert "lock released" in (tmp_path / "first.log").read_text()

    third = _start(config, tmp_path / "third.log")
    try:
        await _holding(db, third, tmp_path / "third.log")
        third.send_signal(signal.SIGINT)
        assert third.wait(30) == 0, (tmp_path / "third.log").read_text()
    finally:
        if third.poll() is None:
            third.kill()
            third.wait()
    assert db.lock_row() is None


def test_cli_list_and_run_now(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "scheduler": {
        "timezone": "Europe/Berlin", "monthly_report": {"cron": "0 3 1 * *",
                                                        "enabled": False}}}), encoding="utf-8")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*CLI, "scheduler", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, env=_env())

    help_text = subprocess.run([*CLI, "--help"], capture_output=True, text=True, env=_env())
    assert "scheduler" in help_text.stdout
    out = cli()
    assert out.returncode == 2 and all(c in out.stderr for c in ("run", "list", "run-now"))

    out = cli("list", "--config", str(config), "--json")
    assert out.returncode == 0, out.stderr
    rows = {row["job"]: row for row in json.loads(out.stdout)}
    assert rows["weekly_drift"]["cron"] == "0 6 * * mon"
    assert rows["weekly_drift"]["timezone"] == "Europe/Berlin"
    assert datetime.fromisoformat(rows["weekly_drift"]["next_run_time"]).weekday() == 0
    assert rows["monthly_report"]["enabled"] is False
    assert rows["monthly_report"]["next_run_time"] is None
    table = cli("list", "--config", str(config))
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:4] == [
        "JOB", "CRON", "TIMEZONE", "ENABLED"]

    out = cli("run-now", "retention", "--config", str(config), "--json")
    assert out.returncode == 0, out.stderr
    nothing_due(json.loads(out.stdout))
    out = cli("run-now", "retention_v2", "--config", str(config))
    assert out.returncode == 2 and "weekly_drift, retention, monthly_report" in out.stderr
    conn = sqlite3.connect(tmp_path / "data" / "audit.db")
    try:
        kinds = [row[0] for row in conn.execute("SELECT event_type FROM audit_events ORDER BY seq")]
    finally:
        conn.close()
    assert kinds == ["job_started", "retention", "retention", "job_finished"]
