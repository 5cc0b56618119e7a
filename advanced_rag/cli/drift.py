"""``advanced-rag drift …``: capture and list references, check queries, the weekly report.

``drift report`` exits 0 when no drift was detected (or there was too little data, which the
report says), 3 when drift was detected, and 1 (2 for bad usage) on errors, for cron.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .audit import parse_when

EXIT_OK, EXIT_DRIFT = 0, 3


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def summary_lines(report: Any) -> list[str]:
    """A few lines a human reads first: verdict, magnitude, each test, what to do."""
    data = report.to_dict()
    lines = [f"status: {data['status']}  drift_detected: {data['drift_detected']}  "
             f"magnitude: {data['drift_magnitude']}"]
    if data.get("reason"):
        lines.append(f"reason: {data['reason']}")
    for outcome in report.tests:
        r = outcome.result
        lines.append(f"  {r.family:<11} {r.name:<28} p={r.p_value:.4g}  Holm p={outcome.adjusted_p:.4g}"
                     f"  effect={r.effect_size:.3f}{'  REJECTED' if outcome.rejected else ''}")
    lines += [f"  -> {text}" for text in report.recommendations]
    return lines


async def cmd_capture(args: argparse.Namespace) -> int:
    from ..pipeline import AdvancedRAGPipeline
    from . import _load

    config = _load(args.config)
    async with AdvancedRAGPipeline.from_config(config) as rag:
        reference = await rag.capture_reference(
            args.name, start=parse_when(args.start) if args.start else None,
            end=parse_when(args.end) if args.end else None, first=args.first,
            tenant=args.tenant, replace=args.replace, actor=args.actor)
    _out(f"reference {reference.name!r}: {reference.size} queries ({reference.description})")
    return EXIT_OK


async def cmd_list(args: argparse.Namespace) -> int:
    from ..drift.store import DriftStore
    from . import _load

    async with DriftStore.from_config(_load(args.config)) as store:
        rows = await store.list_references()
    if args.json:
        _out(json.dumps([{"name": r.name, "size": r.size, "created_at": r.created_at.isoformat(),
                          "created_by": r.created_by, "description": r.description,
                          "tenant": r.tenant} for r in rows], indent=2))
        return EXIT_OK
    if not rows:
        _out("no references yet: `advanced-rag drift reference capture --first 500`")
    for r in rows:
        _out(f"{r.name:<20} {r.size:>6} queries  {r.created_at:%Y-%m-%d %H:%M}  by {r.created_by}"
             f"  {r.description}")
    return EXIT_OK


async def cmd_check(args: argparse.Namespace) -> int:
    from ..pipeline import AdvancedRAGPipeline
    from . import _load

    lines = (await asyncio.to_thread(Path(args.queries).read_text, encoding="utf-8")).splitlines()
    queries = [q.strip() for q in lines if q.strip()]
    async with AdvancedRAGPipeline.from_config(_load(args.config)) as rag:
        report = await rag.detect_drift(queries, reference=args.reference, actor=args.actor)
    if args.json:
        _out(json.dumps(report.to_dict(), indent=2))
    else:
        _out("\n".join(summary_lines(report)))
    return EXIT_DRIFT if report.drift_detected else EXIT_OK


async def cmd_report(args: argparse.Namespace) -> int:
    from ..drift.weekly import weekly_report
    from . import _load

    result = await weekly_report(_load(args.config), week=args.week, tenant=args.tenant,
                                 actor=args.actor, out_dir=args.out_dir)
    _out(f"week {result.period} vs reference {result.reference!r}")
    _out("\n".join(summary_lines(result.report)))
    for kind, path in result.files.items():
        _out(f"{kind}: {path}")
    _out(f"sha256: {result.digest} (recorded in the audit log)")
    return result.exit_code


def add_commands(command: Callable[[str, str, Any], argparse.ArgumentParser]) -> None:
    from . import SubCommand, default_actor, subcommands

    p = command("drift", "Drift monitoring: references, checks and the weekly report.", None)
    inner = subcommands(p)

    def sub(group: SubCommand, name: str, text: str, handler: Any) -> argparse.ArgumentParser:
        s = group(name, text, handler)
        s.add_argument("--actor", default=default_actor(), help="who ran it (recorded)")
        return s

    refs = subcommands(inner("reference", "Reference snapshots of logged queries.", None,
                             short="capture or list reference snapshots"))
    s = sub(refs, "capture", "Snapshot logged queries as a named reference: a time range "
                             "(--start/--end) or the first N (--first, from --start).", cmd_capture)
    s.add_argument("--name", help="reference name (default: drift.reference)")
    s.add_argument("--start", metavar="WHEN", help="2026-11-01 or an ISO datetime (UTC if no offset)")
    s.add_argument("--end", metavar="WHEN", help="exclusive end, same format")
    s.add_argument("--first", type=int, metavar="N", help="the first N logged queries")
    s.add_argument("--tenant", help="only this tenant's queries")
    s.add_argument("--replace", action="store_true", help="overwrite a reference of that name")
    s = sub(refs, "list", "List the reference snapshots.", cmd_list)
    s.add_argument("--json", action="store_true", help="print JSON")

    s = sub(inner, "check", "Compare a file of queries (one per line) with the reference; "
                            "exit 3 on drift.", cmd_check)
    s.add_argument("queries", metavar="FILE", help="text file, one query per line")
    s.add_argument("--reference", help="reference name (default: drift.reference)")
    s.add_argument("--json", action="store_true", help="print the report as JSON")

    s = sub(inner, "report", "Write the weekly drift report (JSON, Markdown, HTML); exit 0 no "
                             "drift, 3 drift, 1 error.", cmd_report)
    s.add_argument("--week", metavar="YYYY-Www", help="ISO week, e.g. 2026-W47 (default: the "
                                                      "last full week)")
    s.add_argument("--tenant", help="only this tenant's queries")
    s.add_argument("--out-dir", metavar="DIR", help="default: drift.report_dir")
