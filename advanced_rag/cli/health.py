"""``advanced-rag health``: check every configured dependency; exit 1 when a required one is
down (for a load balancer, a Kubernetes probe or a cron watchdog).

Opening the pipeline already needs the audit store and Milvus: when that fails, the failure
is reported as the ``open`` check and the exit code is 1, like any other required check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK, EXIT_DOWN = 0, 1


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


async def cmd_health(args: argparse.Namespace) -> int:
    from ..errors import AdvancedRagError, ConfigError
    from ..health import HealthCheck, HealthReport
    from ..pipeline import AdvancedRAGPipeline
    from . import _load

    config = _load(args.config)
    try:
        async with AdvancedRAGPipeline.from_config(config) as rag:
            report = await rag.health(timeout_s=args.timeout)
    except ConfigError:
        raise
    except AdvancedRagError as exc:
        report = HealthReport((HealthCheck("open", False, True, 0.0,
                                           f"{type(exc).__name__}: {exc}"[:500]),))
    if args.json:
        _out(json.dumps(report.to_dict(), indent=2))
    else:
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            state = "ok" if check.ok else ("DOWN" if check.required else "down")
            _out(f"{check.name:<{width}}  {state:<4}  {check.latency_ms:8.1f} ms  {check.detail}")
        for breaker in report.breakers:
            _out(f"breaker {breaker.name}: {breaker.state}")
        _out("healthy" if report.ok else "UNHEALTHY: a required dependency is down")
    return EXIT_OK if report.ok else EXIT_DOWN


def add_commands(command: Callable[[str, str, Any], argparse.ArgumentParser]) -> None:
    p = command("health", "Check every configured dependency: audit store writable, Milvus "
                          "collection loaded, models loaded, hosted providers reachable "
                          "(a cheap call). Exit 0 healthy, 1 a required dependency is down.",
                cmd_health)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="per-check time limit (default: %(default)s)")
