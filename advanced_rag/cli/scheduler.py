"""``advanced-rag scheduler …``: run, list, run-now.

``scheduler run`` is the one scheduler process of a deployment (a systemd unit, a Kubernetes
Deployment with one replica): it holds a lock in the database, so a second one exits 1 naming
the first. SIGTERM or Ctrl-C stops it cleanly (exit 0) after running jobs finish; a second
signal cancels them. Every run, scheduled or ``run-now``, is recorded in the audit log as
``job_started`` then ``job_finished`` or ``job_failed``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import PipelineConfig, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
JOB_NAMES = "weekly_drift, retention, monthly_report"


def _config(args: argparse.Namespace) -> tuple[PipelineConfig, str | None]:
    """The config and the absolute path it came from (jobs reload it from there when they run):
    ``--config``, else ./config.yaml when present, else the built-in defaults (``None``)."""
    from . import DEFAULT_CONFIG

    path = args.config
    if path is None and Path(DEFAULT_CONFIG).is_file():
        path = DEFAULT_CONFIG
    path = None if path is None else str(Path(path).resolve())
    return load_config(path), path


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


async def cmd_run(args: argparse.Namespace) -> int:
    from compliance.errors import SchedulerLockedError
    from compliance.scheduling import run_scheduler

    config, path = _config(args)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=args.log_level, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        await run_scheduler(config, path)
    except SchedulerLockedError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILED
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from compliance.scheduling import list_jobs

    config, _ = _config(args)
    jobs = list_jobs(config)
    if args.json:
        _out(json.dumps([{"job": job.id, "description": job.description, "cron": job.cron,
                          "timezone": job.timezone, "enabled": job.enabled,
                          "next_run_time": (job.next_run_time.isoformat()
                                            if job.next_run_time else None)}
                         for job in jobs], indent=2))
        return EXIT_OK
    rows = [("JOB", "CRON", "TIMEZONE", "ENABLED", "NEXT RUN")]
    rows += [(job.id, job.cron, job.timezone, "yes" if job.enabled else "no",
              f"{job.next_run_time:%Y-%m-%d %H:%M %Z}" if job.next_run_time else "-")
             for job in jobs]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        _out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
             + "  " + row[4])
    return EXIT_OK


async def cmd_run_now(args: argparse.Namespace) -> int:
    from compliance.scheduling import JOBS, run_now

    if args.job not in JOBS:
        sys.stderr.write(f"error: unknown job {args.job!r}; the jobs are: {', '.join(JOBS)}\n")
        return EXIT_USAGE
    config, path = _config(args)
    summary = await run_now(args.job, config, path)  # failure: SchedulerError -> exit 1
    if args.json:
        _out(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        _out(f"job {args.job} finished: {json.dumps(summary, sort_keys=True, default=str)}")
    return EXIT_OK


def add_commands(command: Callable[[str, str, Any], argparse.ArgumentParser]) -> None:
    from . import subcommands

    p = command("scheduler", "Run the scheduled compliance jobs (weekly drift report, daily "
                             "retention, monthly report) with APScheduler, list them, or run "
                             "one now. Every run is audited.", None)
    group = subcommands(p)

    def sub(name: str, text: str, handler: Any) -> argparse.ArgumentParser:
        return group(name, text, handler, short=text.split(". ")[0])

    s = sub("run", "Run the scheduler in the foreground until SIGTERM or Ctrl-C (exit 0 after a "
                   "clean stop). Run exactly one per database: it takes a lock there, and a "
                   "second scheduler exits 1 naming the holder (host:pid) and when its lock "
                   "expires. Jobs, times and the time zone come from the scheduler: section of "
                   "the config; the job store and the lock live in scheduler.url, else the "
                   "audit database.", cmd_run)
    s.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log verbosity on stderr (default: %(default)s)")

    s = sub("list", "List the jobs: cron expression, time zone, enabled, next run time.",
            cmd_list)
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")

    s = sub("run-now", f"Run one job now, in this process, audited like a scheduled run "
                       f"(exit 0 ok, 1 the job failed). JOB is one of: {JOB_NAMES}.",
            cmd_run_now)
    s.add_argument("job", metavar="JOB", help=JOB_NAMES)
    s.add_argument("--json", action="store_true", help="print the job's summary as JSON")
