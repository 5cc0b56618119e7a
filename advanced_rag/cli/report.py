"""``advanced-rag report …``: the monthly compliance report, its verification, latency trends.

Exit codes: ``report monthly`` 0 written and the audit chain verified, 4 written but the chain
FAILED verification (the report says so on top), 1 error; ``report verify`` 0 the digest and
the signature check, 1 they do not (or the file is unsigned); ``report performance`` 0, 1 on
error. Bad usage or configuration: 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from .audit import parse_when

EXIT_OK, EXIT_FAILED = 0, 1


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def monthly_lines(result: Any) -> list[str]:
    """What a human (or cron mail) reads first about a written monthly report."""
    report = result.report
    chain = report.chain
    lines = []
    if chain.failure is not None:
        f = chain.failure
        lines.append(f"AUDIT CHAIN INVALID at seq {f.seq}: {f.reason} — the report is written "
                     "and says so; investigate before relying on it")
    else:
        lines.append(f"audit chain OK: {chain.events_checked:,} events, head seq {chain.head_seq}"
                     f" ({chain.anchor_status})")
    sla = report.retrieval.sla
    rate = "n/a" if sla.compliance_rate is None else f"{100 * sla.compliance_rate:.2f} %"
    q = report.quality
    lines += [f"period {report.period}: {report.total_events:,} events, "
              f"{report.retrieval.requests:,} retrievals, SLA met {rate} "
              f"(target {sla.target_latency_ms:.0f} ms), {q.answers:,} answers "
              f"({q.flagged} flagged, {q.withheld} withheld, {q.refused} refused), "
              f"{report.access_denied.count} access denials, {len(report.drift_reports)} drift "
              f"reports, {report.version_updates} document version updates"]
    lines += [f"note: {n}" for n in report.notes if not n.startswith("THE AUDIT CHAIN")]
    lines += [f"{kind}: {path}" for kind, path in result.files.items()]
    lines.append(result.signing_note)
    recorded = ("recorded in the audit log at seq " + str(result.recorded_seq)
                if result.recorded_seq is not None else "NOT recorded in the audit log")
    lines.append(f"sha256: {result.digest} ({recorded})")
    lines += [f"warning: {w}" for w in result.warnings]
    return lines


async def cmd_monthly(args: argparse.Namespace) -> int:
    from compliance.reports import write_monthly_report

    from . import _load

    result = await write_monthly_report(_load(args.config), month=args.month, out_dir=args.out_dir,
                                        actor=args.actor, public_key=args.public_key)
    lines = monthly_lines(result)
    if result.report.chain.failure is not None:
        _err(lines[0])
    for line in lines:
        _out(line)
    return int(result.exit_code)


async def _recorded(config_path: str | None, digest: str) -> int | None:
    """``seq`` of the ``compliance_report`` event recording ``digest``, if any."""
    from compliance.audit.models import AuditEventType
    from compliance.manager import ComplianceManager

    from . import _load

    async with ComplianceManager(_load(config_path)) as cm:
        events = await cm.query_audit_logs(AuditEventType.COMPLIANCE_REPORT, limit=100_000,
                                           newest_first=True)
    for record in events:
        if record.payload is not None and record.payload.get("report_sha256") == digest:
            return record.seq
    return None


async def cmd_verify(args: argparse.Namespace) -> int:
    from compliance.reports import verify_report_file

    check = await asyncio.to_thread(verify_report_file, args.file, public_key=args.public_key)
    seq = await _recorded(args.config, check.report_sha256) if args.audit_log else None
    ok = check.ok and (seq is not None or not args.audit_log)
    if args.json:
        _out(json.dumps({"ok": ok, "path": check.path, "period": check.period,
                         "report_sha256": check.report_sha256, "digest_ok": check.digest_ok,
                         "signature": check.signature, "key_id": check.key_id,
                         "key_pinned": check.key_pinned, "problems": list(check.problems),
                         "audit_log_seq": seq}, indent=2))
    else:
        _out(f"{check.path}: {'OK' if ok else 'INVALID'}")
        _out(f"  content digest: {'matches' if check.digest_ok else 'MISMATCH'} "
             f"({check.report_sha256})")
        trust = "pinned key" if check.key_pinned else "key named in the signature file (not pinned)"
        _out(f"  signature: {check.signature}" + (f", key {check.key_id}, {trust}"
                                                  if check.key_id else ""))
        if args.audit_log:
            _out("  audit log: " + (f"recorded at seq {seq}" if seq is not None
                                    else "NO compliance_report event records this digest"))
        for problem in check.problems:
            _err(f"  problem: {problem}")
    return EXIT_OK if ok else EXIT_FAILED


async def cmd_performance(args: argparse.Namespace) -> int:
    from compliance.reports import format_table, performance_report

    from . import _load

    trend, png = await performance_report(
        _load(args.config), granularity=args.period,
        start=parse_when(args.start) if args.start else None,
        end=parse_when(args.end) if args.end else None, output=args.output)
    if args.json:
        _out(json.dumps({**trend.to_dict(), "chart": str(png)}, indent=2))
    else:
        _out(format_table(trend))
        _out(f"chart: {png}")
    return EXIT_OK


def add_commands(command: Callable[[str, str, Any], argparse.ArgumentParser]) -> None:
    from compliance.reports.performance import GRANULARITIES

    from . import default_actor, subcommands

    p = command("report", "Compliance reports: the monthly report, its verification, latency "
                          "trends.", None)
    sub = subcommands(p)

    s = sub("monthly", "Write the monthly compliance report (JSON, Markdown, HTML), sign it and "
                       "record its digest; exit 0 ok, 4 audit chain INVALID, 1 error.", cmd_monthly)
    s.add_argument("--month", metavar="YYYY-MM", help="calendar month, UTC (default: the last "
                                                      "full month)")
    s.add_argument("--out-dir", metavar="DIR", help="default: <data_dir>/reports/compliance")
    s.add_argument("--public-key", metavar="HEX|PEM", help="pin the checkpoint signing key "
                                                            "chain verification accepts")
    s.add_argument("--actor", default=default_actor(), help="who ran it (recorded)")

    s = sub("verify", "Check a JSON report: content digest and detached signature (.sig); "
                      "exit 0 valid, 1 not.", cmd_verify)
    s.add_argument("file", metavar="FILE.json", help="compliance-YYYY-MM.json")
    s.add_argument("--public-key", metavar="HEX|PEM", help="the only key to accept (default: "
                                                            "the key the .sig names)")
    s.add_argument("--audit-log", action="store_true", help="also require a compliance_report "
                                                             "audit event recording its digest")
    s.add_argument("--json", action="store_true", help="print the result as JSON")

    s = sub("performance", "Per-stage latency p50/p95/p99 and SLA compliance per day, week or "
                           "month from the audit log: a table and a PNG chart.", cmd_performance)
    s.add_argument("--period", choices=GRANULARITIES, default="daily", help="bucket size "
                                                                            "(default: daily)")
    s.add_argument("--from", dest="start", metavar="WHEN", help="2026-10-01 or an ISO datetime "
                   "(default: 30 days / 12 weeks / 12 months back)")
    s.add_argument("--to", dest="end", metavar="WHEN", help="exclusive end (default: the start "
                                                            "of the current day/week/month)")
    s.add_argument("--output", metavar="FILE.png", help="default: <data_dir>/reports/performance/")
    s.add_argument("--json", action="store_true", help="print the figures as JSON")
