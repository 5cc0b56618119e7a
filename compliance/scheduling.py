"""Scheduled compliance jobs on APScheduler 3.x: weekly drift, daily retention, monthly report.

The only module that imports APScheduler. Jobs live in a ``SQLAlchemyJobStore`` on
``scheduler.url`` or, by default, the audit database; every job is the same module-level
coroutine, :func:`run_job` (stored by reference, its arguments plain data: the job id and the
config path), which reloads the config, runs the job's target and records ``job_started``
then ``job_finished`` or ``job_failed`` (linked by ``parent_event_id``) in the audit chain.

APScheduler 3.x cannot share one job store between two schedulers, so :func:`run_scheduler`
first takes :class:`SchedulerLock`, a row in a small ``scheduler_lock`` table of its own,
renewed every ``lock_ttl_s / 3`` seconds and released on a clean stop. A second scheduler on the
same database refuses to start with :class:`~compliance.errors.SchedulerLockedError`.

Cron expressions are crontab's (minute hour day month day-of-week, 0 or 7 = Sunday); the
day-of-week field is translated to names because APScheduler 3.x counts 0 as Monday. When both
day and day-of-week are restricted, APScheduler runs when *both* match (crontab: either).

Example::

    config = load_config("config.yaml")
    for job in list_jobs(config):
        print(job.id, job.cron, job.timezone, job.next_run_time)
    summary = await run_now("retention", config, "config.yaml")   # audited like a scheduled run
    await run_scheduler(config, "config.yaml")                     # until SIGTERM / SIGINT
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from advanced_rag.config import PipelineConfig, load_config
from advanced_rag.errors import ConfigError

from .audit.models import AuditEvent, AuditEventType
from .audit.trail import AuditTrail
from .errors import SchedulerError
from .scheduler_lock import LockState, SchedulerLock, keep_lock, scheduler_database

__all__ = ["ACTOR", "JOBS", "JobInfo", "JobSpec", "LockState", "SchedulerLock", "cron_trigger",
           "list_jobs", "monthly_report_not_implemented", "resolve_target",
           "run_job", "run_now", "run_scheduler"]

log = logging.getLogger(__name__)

ACTOR = "scheduler"
"""The audit ``actor`` of every job event."""
RUN_JOB = "compliance.scheduling:run_job"
JOBSTORE_TABLE = "apscheduler_jobs"


# -- the jobs --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job: its id (also the ``scheduler:`` config key) and target, ``"module:function"``,
    an ``async def target(config, *, now) -> Mapping`` imported when the job runs."""

    id: str
    target: str
    description: str


JOBS: Mapping[str, JobSpec] = MappingProxyType({spec.id: spec for spec in (
    JobSpec("weekly_drift", "advanced_rag.drift.weekly:scheduled_weekly_report",
            "weekly drift report"),
    JobSpec("retention", "compliance.retention.job:scheduled_retention",
            "daily retention: redact/prune, delete old records, honour legal holds"),
    JobSpec("monthly_report", "compliance.reports.monthly:scheduled_monthly_report",
            "monthly compliance report of the last full month (JSON, Markdown, HTML; signed)"),
)})


async def monthly_report_not_implemented(config: PipelineConfig, *,
                                         now: datetime) -> dict[str, Any]:
    """Stand-in for the monthly compliance report until it exists: writes nothing, says so."""
    log.warning("monthly report job: not implemented yet, no report was written")
    return {"status": "not_implemented",
            "message": "the monthly compliance report arrives with the reporting issue; "
                       "no report was written"}


def _spec(job_id: str) -> JobSpec:
    try:
        return JOBS[job_id]
    except KeyError:
        raise SchedulerError(f"unknown job {job_id!r}; the jobs are: {', '.join(JOBS)}") from None


def resolve_target(ref: str) -> Callable[..., Any]:
    """Import ``"package.module:function"``; any failure is a :class:`SchedulerError`."""
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise SchedulerError(f"job target {ref!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or anything the module raised while importing
        raise SchedulerError(f"cannot import job target {ref!r}: {type(exc).__name__}: {exc}") \
            from exc
    try:
        target = attrgetter(attr)(module)
    except AttributeError:
        raise SchedulerError(f"job target {ref!r}: module {module_name!r} has no {attr!r}") \
            from None
    if not callable(target):
        raise SchedulerError(f"job target {ref!r} is not callable")
    return target  # type: ignore[no-any-return]


# -- triggers and listing --------------------------------------------------------------------

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 (and 7) = sun


def _day(token: str) -> int:
    if token in _DAYS:
        return _DAYS.index(token)
    value = int(token)
    if not 0 <= value <= 7:
        raise ValueError(f"day of week {token!r} is not 0-7 or sun-sat")
    return value


def _day_of_week(field: str) -> str:
    """A crontab day-of-week field as APScheduler day names (which count 0 as Monday)."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.lower().split(","):
        span, slash, step_text = part.partition("/")
        step = int(step_text) if slash else 1
        if step < 1:
            raise ValueError(f"step in {part!r} must be at least 1")
        if span == "*":
            first, last = 0, 7
        elif "-" in span:
            start, end = span.split("-", 1)
            first, last = _day(start), _day(end)
        else:
            first = _day(span)
            last = 7 if slash else first
        if first > last:
            raise ValueError(f"day-of-week range {span!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(name for name in (*_DAYS[1:], _DAYS[0]) if _DAYS.index(name) in days)


def cron_trigger(expr: str, timezone: str, *, key: str | None = None) -> CronTrigger:
    """A ``CronTrigger`` for a crontab expression (minute hour day month day-of-week).

    Example::

        >>> cron_trigger("0 6 * * 1", "UTC")   # Monday, as crontab means it
        <CronTrigger (month='*', day='*', day_of_week='mon', hour='6', minute='0', timezone='UTC')>
    """
    fields = expr.split()
    if len(fields) != 5:
        raise ConfigError(f"cron {expr!r} must have 5 fields: minute hour day month day-of-week",
                          key=key)
    minute, hour, day, month, day_of_week = fields
    try:
        return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                           day_of_week=_day_of_week(day_of_week), timezone=ZoneInfo(timezone))
    except ValueError as exc:
        raise ConfigError(f"invalid cron {expr!r}: {exc}", key=key) from None


def _triggers(config: PipelineConfig) -> dict[str, tuple[CronTrigger, bool]]:
    settings = config.scheduler
    out = {}
    for job_id in JOBS:
        schedule = getattr(settings, job_id)
        trigger = cron_trigger(schedule.cron, settings.timezone, key=f"scheduler.{job_id}.cron")
        out[job_id] = (trigger, bool(schedule.enabled))
    return out


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One job as configured; ``next_run_time`` (in the job's time zone) is ``None`` when the
    job is disabled."""

    id: str
    description: str
    cron: str
    timezone: str
    enabled: bool
    next_run_time: datetime | None


def list_jobs(config: PipelineConfig, *, now: datetime | None = None) -> list[JobInfo]:
    """Every job with its schedule and next run time after ``now`` (default: the current time),
    computed from the trigger; no database is touched.

    Example::

        for job in list_jobs(load_config("config.yaml")):
            print(f"{job.id:<15} {job.cron:<12} {job.next_run_time}")
    """
    moment = datetime.now(UTC) if now is None else now
    if moment.utcoffset() is None:
        raise ConfigError(f"now {moment.isoformat()!r} is naive; give a timezone")
    infos = []
    for job_id, (trigger, enabled) in _triggers(config).items():
        schedule = getattr(config.scheduler, job_id)
        upcoming = trigger.get_next_fire_time(None, moment.astimezone(trigger.timezone))
        infos.append(JobInfo(job_id, JOBS[job_id].description, schedule.cron,
                             config.scheduler.timezone, enabled, upcoming if enabled else None))
    return infos


# -- running one job, audited ------------------------------------------------------------------

# The executor tells run_job which scheduled time it is running (APScheduler 3.x does not pass
# it to the job): set around task creation, the new task's context keeps the value.
_SCHEDULED_AT: ContextVar[datetime | None] = ContextVar("scheduled_at", default=None)


def _absolute(path: str | os.PathLike[str] | None) -> str | None:
    """Jobs are stored with the config path, and may run from another working directory."""
    return None if path is None else str(Path(path).resolve())


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


async def run_job(job_id: str, config_path: str | None) -> dict[str, Any]:
    """What APScheduler stores and calls (``compliance.scheduling:run_job``): load the config
    (``None``: the defaults), then run the job audited, as :func:`run_now` does."""
    spec = _spec(job_id)
    scheduled_at = _SCHEDULED_AT.get()
    config = load_config(config_path)
    return await _execute(spec, config, config_path=config_path, scheduled_at=scheduled_at,
                          trigger="schedule" if scheduled_at is not None else "manual")


async def run_now(job_id: str, config: PipelineConfig,
                  config_path: str | os.PathLike[str] | None = None, *,
                  target: str | None = None) -> dict[str, Any]:
    """Run a job now, in this process, audited like a scheduled run; return its summary.

    ``target`` (``"module:function"``) replaces the job's target for this run: a staged
    implementation, or a test double. A job disabled in the config still runs (a manual run is
    deliberate). A failed job is recorded as ``job_failed`` and raised as
    :class:`SchedulerError`; an unknown ``job_id`` raises it naming the valid ids. This does not
    coordinate with a running scheduler: avoid starting a job by hand while it runs on schedule.

    Example::

        summary = await run_now("retention", load_config("config.yaml"), "config.yaml")
        summary["status"]   # 'applied' (see compliance.retention.job)
    """
    spec = _spec(job_id)
    path = None if config_path is None else str(config_path)
    return await _execute(spec, config, config_path=path, scheduled_at=None, trigger="manual",
                          target=target)


async def _execute(spec: JobSpec, config: PipelineConfig, *, config_path: str | None,
                   scheduled_at: datetime | None, trigger: str,
                   target: str | None = None) -> dict[str, Any]:
    trail = AuditTrail.from_settings(config.audit, data_dir=config.data_dir,
                                     erasure=config.erasure)
    await trail.open()
    try:
        return await _audited(trail, spec, config, config_path=config_path,
                              scheduled_at=scheduled_at, trigger=trigger,
                              ref=target or spec.target)
    finally:
        await trail.close()


async def _audited(trail: AuditTrail, spec: JobSpec, config: PipelineConfig, *,
                   config_path: str | None, scheduled_at: datetime | None, trigger: str,
                   ref: str) -> dict[str, Any]:
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    common = {"job_id": spec.id, "trigger": trigger, "target": ref}
    started = AuditEvent(AuditEventType.JOB_STARTED, ACTOR, {
        **common, "scheduled_at": _iso(scheduled_at), "started_at": _iso(started_at),
        "host": socket.gethostname(), "pid": os.getpid(), "config": config_path})
    await trail.record([started])  # fail_closed: an unrecordable job does not run
    log.info("job %s started (%s%s)", spec.id, trigger,
             f", scheduled for {_iso(scheduled_at)}" if scheduled_at else "")
    try:
        result = resolve_target(ref)(config, now=scheduled_at or started_at)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, Mapping):
            raise SchedulerError(f"job target {ref!r} returned {type(result).__name__}, "
                                 "not a summary mapping")
        summary = dict(result)
        finished = AuditEvent(AuditEventType.JOB_FINISHED, ACTOR, {
            **common, "summary": summary, "duration_s": round(time.perf_counter() - clock, 3)},
            parent_event_id=started.event_id)
    except BaseException as exc:  # cancellation too: a started job always gets an outcome
        duration = time.perf_counter() - clock
        message = str(exc) or repr(exc)
        await trail.record([AuditEvent(AuditEventType.JOB_FAILED, ACTOR, {
            **common, "error": type(exc).__name__, "message": trail.text(message[:2000]),
            "duration_s": round(duration, 3)}, parent_event_id=started.event_id)])
        log.error("job %s failed after %.2f s: %s: %s", spec.id, duration,
                  type(exc).__name__, message)
        if isinstance(exc, Exception):
            cause = "" if isinstance(exc, SchedulerError) else f"{type(exc).__name__}: "
            raise SchedulerError(f"job {spec.id!r} failed after {duration:.2f} s: "
                                 f"{cause}{message}") from exc
        raise
    await trail.record([finished])
    log.info("job %s finished in %.2f s: %s", spec.id, finished.payload["duration_s"], summary)
    return summary


# -- the scheduler --------------------------------------------------------------------------


class _AuditedExecutor(AsyncIOExecutor):  # type: ignore[misc]
    """AsyncIOExecutor that hands run_job its scheduled time and can wait for running jobs
    (``AsyncIOExecutor.shutdown`` cancels them instead)."""

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        token = _SCHEDULED_AT.set(run_times[-1])
        try:
            super()._do_submit_job(job, run_times)
        finally:
            _SCHEDULED_AT.reset(token)

    def running(self) -> list[asyncio.Future[Any]]:
        return [f for f in self._pending_futures if not f.done()]


def _sync_jobs(scheduler: Any, config: PipelineConfig,
               triggers: dict[str, tuple[CronTrigger, bool]], config_path: str | None) -> None:
    """Make the job store hold exactly the enabled jobs. A job whose trigger is unchanged keeps
    its stored next run time, so a run missed while no scheduler ran is caught up (within
    ``misfire_grace_s``) instead of silently dropped."""
    enabled = {job_id: trigger for job_id, (trigger, on) in triggers.items() if on}
    for job in scheduler.get_jobs():
        if job.id not in enabled:
            scheduler.remove_job(job.id)
            log.info("removed job %s from the job store (disabled or unknown)", job.id)
    for job_id, trigger in enabled.items():
        old = scheduler.get_job(job_id)
        keep: dict[str, Any] = {}
        if old is not None and old.next_run_time is not None and repr(old.trigger) == repr(trigger):
            keep["next_run_time"] = old.next_run_time
        fields = {field.name: str(field) for field in trigger.fields}
        if fields["day"] != "*" and fields["day_of_week"] != "*":
            log.warning("job %s: day and day-of-week are both restricted; APScheduler runs it "
                        "only when both match (crontab: when either does)", job_id)
        scheduler.add_job(RUN_JOB, trigger=trigger, args=[job_id, config_path], id=job_id,
                          name=JOBS[job_id].description, coalesce=True, max_instances=1,
                          misfire_grace_time=config.scheduler.misfire_grace_s,
                          replace_existing=True, **keep)


def _on_job_event(event: Any, *, trail: AuditTrail, grace_s: int,
                  tasks: set[asyncio.Task[Any]]) -> None:
    """Runs the scheduler skipped are logged and recorded as ``job_failed`` (no job_started)."""
    if event.code == EVENT_JOB_MISSED:
        when, outcome, error = event.scheduled_run_time, "missed", "MissedRun"
        message = (f"run due at {_iso(when)} was missed: no scheduler ran it within "
                   f"misfire_grace_s={grace_s} s")
    else:
        when, outcome, error = event.scheduled_run_times[-1], "skipped", "StillRunning"
        message = f"run due at {_iso(when)} was skipped: the previous run was still going"
    log.warning("job %s: %s", event.job_id, message)
    record = AuditEvent(AuditEventType.JOB_FAILED, ACTOR, {
        "job_id": event.job_id, "trigger": "schedule", "outcome": outcome,
        "scheduled_at": _iso(when), "error": error, "message": message,
        "host": socket.gethostname(), "pid": os.getpid()})

    async def write() -> None:
        try:
            await trail.record([record])
        except Exception as exc:
            log.error("could not record the %s run of job %s: %s", outcome, event.job_id, exc)

    task = asyncio.get_running_loop().create_task(write())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _install_signals(stop: asyncio.Event, force: asyncio.Event) -> list[int]:
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("%s again: cancelling running jobs", name)
            force.set()
        else:
            log.info("%s: stopping after running jobs finish (send it again to cancel them)", name)
            stop.set()

    installed: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, not the main thread
            log.debug("cannot handle %s here; stop the scheduler through its stop event", signum)
        else:
            installed.append(signum)
    return installed


def _remove_signals(signals: list[int]) -> None:
    loop = asyncio.get_running_loop()
    for signum in signals:
        loop.remove_signal_handler(signum)


async def _drain(executor: _AuditedExecutor, force: asyncio.Event) -> None:
    running = executor.running()
    if not running:
        return
    log.info("waiting for %d running job(s) to finish", len(running))
    everything = asyncio.gather(*running, return_exceptions=True)
    forced = asyncio.ensure_future(force.wait())
    waiters: set[asyncio.Future[Any]] = {everything, forced}
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    forced.cancel()
    if not everything.done():
        for future in running:
            future.cancel()
        await everything


async def run_scheduler(config: PipelineConfig, config_path: str | os.PathLike[str] | None, *,
                        stop: asyncio.Event | None = None) -> None:
    """Be *the* scheduler: take the database lock, run the enabled jobs until SIGTERM/SIGINT
    or ``stop`` is set, wait for running jobs, shut down and release the lock.

    Each scheduled run reloads its config from ``config_path`` (``None``: the built-in
    defaults), so ``config`` must be what that gives. Raises :class:`SchedulerLockedError`
    when another scheduler holds the lock, and :class:`SchedulerError` when the lock was lost
    while running (the scheduler stops then).
    A second signal cancels running jobs (each is recorded as ``job_failed``).

    Example::

        await run_scheduler(load_config("config.yaml"), "config.yaml")
    """
    path = _absolute(config_path)
    if load_config(path) != config:  # each run reloads it: what runs must be what was given
        raise SchedulerError(f"the config differs from {path or 'the built-in defaults'}, which "
                             "every scheduled run reloads: pass the path the config came from")
    stop = stop if stop is not None else asyncio.Event()
    force, lost = asyncio.Event(), asyncio.Event()
    triggers = _triggers(config)  # a bad cron fails before the database is touched
    db = scheduler_database(config)
    signals = _install_signals(stop, force)  # from here on, a signal means a clean stop
    lock = SchedulerLock(db.engine(), ttl_s=config.scheduler.lock_ttl_s, schema=db.schema)
    try:
        await lock.install()
        expires = await lock.acquire()
    except BaseException:
        _remove_signals(signals)
        await lock.close()
        raise
    log.info("scheduler lock acquired by %s until %s", lock.holder, _iso(expires))
    trail = AuditTrail.from_settings(config.audit, data_dir=config.data_dir,
                                     erasure=config.erasure)
    tasks: set[asyncio.Task[Any]] = set()
    scheduler: Any = None
    store: Any = None
    keeper: asyncio.Task[None] | None = None
    try:
        await trail.open()
        executor = _AuditedExecutor()
        store = SQLAlchemyJobStore(engine=db.engine(), tablename=JOBSTORE_TABLE,
                                   tableschema=db.schema)
        scheduler = AsyncIOScheduler(jobstores={"default": store},
                                     executors={"default": executor},
                                     timezone=ZoneInfo(config.scheduler.timezone))
        scheduler.add_listener(lambda event: _on_job_event(
            event, trail=trail, grace_s=config.scheduler.misfire_grace_s, tasks=tasks),
            EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        scheduler.start(paused=True)
        _sync_jobs(scheduler, config, triggers, path)
        scheduler.resume()
        keeper = asyncio.create_task(keep_lock(lock, stop, lost))
        jobs = scheduler.get_jobs()
        log.info("scheduler started on %s with %d job(s)", db.url.render_as_string(), len(jobs))
        for job in jobs:
            log.info("job %s: next run %s", job.id, job.next_run_time)
        await stop.wait()
        log.info("scheduler stopping")
        scheduler.pause()
        await _drain(executor, force)
    finally:
        _remove_signals(signals)
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=True)  # its job store disposes of the store's engine
            await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the loop's next turn
        elif store is not None:
            store.engine.dispose()
        if keeper is not None:
            keeper.cancel()
            with suppress(asyncio.CancelledError):
                await keeper
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await trail.close()
        try:
            released = await lock.release()
        finally:
            await lock.close()
        log.info("scheduler stopped; lock %s", "released" if released else "was no longer held")
    if lost.is_set():
        raise SchedulerError("the scheduler lost its database lock (it lapsed and another "
                             "scheduler took it over) and stopped")
