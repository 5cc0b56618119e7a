"""``advanced-rag retention …``: plan, apply, and legal holds (place, release, list).

``retention plan`` only reads; ``retention apply`` changes data (asks first unless ``--yes``)
and records the plan and outcome as ``retention`` audit events. Exit codes: 0 ok, 1 the run
failed (a class could not be applied, the audit chain did not verify), 2 usage or
configuration (e.g. a policy under the legal floor, an unknown hold id).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..errors import InputError
from .audit import parse_when

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SCOPES = {"tenant": "tenant", "document": "document", "subject": "subject",
          "time-range": "time_range"}


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _manager(args: argparse.Namespace) -> Any:
    from compliance.manager import ComplianceManager

    from . import _load

    return ComplianceManager(_load(args.config))


def _now(args: argparse.Namespace) -> datetime:
    return parse_when(args.now) if args.now else datetime.now(UTC)


def print_plan(plan: Any) -> None:
    """A retention plan as a table, then what each hold kept and the notes."""
    _out(f"retention plan at {plan.now.isoformat()}: {plan.selected:,} records due, "
         f"{plan.held:,} kept by legal holds")
    _out(f"  {'CLASS':<24} {'ACTION':<7} {'KEEP':>6} {'CUT-OFF':<17} {'DUE':>8} {'ACT ON':>8} "
         f"{'HELD':>6}")
    for c in plan.classes:
        held = sum(h.records for h in c.held)
        _out(f"  {c.record_class:<24} {c.action:<7} {c.keep_days:>5}d "
             f"{c.cutoff:%Y-%m-%d %H:%M}Z {c.candidates:>8,} {c.selected:>8,} {held:>6,}")
        if c.prune_through is not None:
            _out(f"      prune events through seq {c.prune_through} (signed prune point)")
        for h in c.held:
            _out(f"      kept {h.records:,} by {h.description}")
        for note in c.notes:
            _out(f"      note: {note}")


async def cmd_plan(args: argparse.Namespace) -> int:
    async with _manager(args) as cm:
        result = await cm.enforce_retention_policy(now=_now(args), dry_run=True,
                                                   actor=args.actor)
    if args.json:
        _out(json.dumps(result.plan.to_dict(), indent=2))
    else:
        print_plan(result.plan)
    return EXIT_OK


async def cmd_apply(args: argparse.Namespace) -> int:
    from compliance.errors import RetentionError

    now = _now(args)
    async with _manager(args) as cm:
        if not args.yes:
            if not sys.stdin.isatty():
                raise InputError("retention apply deletes data: pass --yes to confirm "
                                 "(see `advanced-rag retention plan` first)")
            print_plan((await cm.enforce_retention_policy(now=now, dry_run=True,
                                                          actor=args.actor)).plan)
            answer = await asyncio.to_thread(input, "apply this plan? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                _out("nothing changed")
                return EXIT_OK
        try:
            result = await cm.enforce_retention_policy(now=now, actor=args.actor)
        except RetentionError as exc:
            failed = getattr(exc, "result", None)
            if failed is None:
                raise
            result = failed
    if args.json:
        _out(json.dumps(result.summary(), indent=2))
    else:
        for outcome in result.outcomes:
            state = f"FAILED: {outcome.error}" if outcome.error else f"{outcome.done:,} done"
            _out(f"{outcome.record_class:<24} {outcome.action:<7} {state}")
        if result.prune_point is not None:
            p = result.prune_point
            _out(f"audit events pruned through seq {p.through_seq}; prune point signed by key "
                 f"{p.key_id} (verification starts there)")
        _out(f"recorded as retention events (plan {result.plan_event_id})")
    return EXIT_OK if result.ok else EXIT_FAILED


def _hold_row(hold: Any) -> dict[str, Any]:
    return {"id": hold.id, "scope": hold.scope, "tenant": hold.tenant, "doc_id": hold.doc_id,
            "subject_ref": hold.subject_ref,
            "start": hold.start.isoformat() if hold.start else None,
            "end": hold.end.isoformat() if hold.end else None, "reason": hold.reason,
            "placed_by": hold.placed_by, "placed_at": hold.placed_at.isoformat()}


async def cmd_hold_place(args: argparse.Namespace) -> int:
    async with _manager(args) as cm:
        hold = await cm.place_legal_hold(
            SCOPES[args.scope], reason=args.reason, actor=args.actor, tenant=args.tenant,
            doc_id=args.doc_id, subject=args.subject,
            start=parse_when(args.start) if args.start else None,
            end=parse_when(args.end) if args.end else None)
    if args.json:
        _out(json.dumps(_hold_row(hold)))
    else:
        _out(f"placed {hold.describe()}")
        _out(f"release it with: advanced-rag retention hold release {hold.id} --reason ...")
    return EXIT_OK


async def cmd_hold_release(args: argparse.Namespace) -> int:
    async with _manager(args) as cm:
        hold = await cm.release_legal_hold(args.id, reason=args.reason, actor=args.actor)
    _out(f"released {hold.describe()}")
    return EXIT_OK


async def cmd_hold_list(args: argparse.Namespace) -> int:
    async with _manager(args) as cm:
        holds = await cm.legal_holds()
    if args.json:
        _out(json.dumps([_hold_row(h) for h in holds], indent=2))
        return EXIT_OK
    if not holds:
        _out("no active legal holds")
    for h in holds:
        _out(f"{h.id}  {h.scope:<10} placed {h.placed_at:%Y-%m-%d} by {h.placed_by}: "
             f"{h.describe()}")
    return EXIT_OK


def add_commands(command: Callable[[str, str, Any], argparse.ArgumentParser]) -> None:
    from . import SubCommand, default_actor, subcommands

    p = command("retention", "Retention policy (plan, apply) and legal holds.", None)
    inner = subcommands(p)

    def sub(group: SubCommand, name: str, text: str, handler: Any) -> argparse.ArgumentParser:
        s = group(name, text, handler)
        s.add_argument("--actor", default=default_actor(),
                       help="who is acting, as recorded in the audit log (default: %(default)s)")
        return s

    when = ("the policy clock: 2026-11-01 or an ISO datetime (UTC if no offset; default: now)")
    s = sub(inner, "plan", "Show what retention would redact, prune and delete, per record "
                           "class, and which legal holds keep what (changes nothing).", cmd_plan)
    s.add_argument("--now", metavar="WHEN", help=when)
    s.add_argument("--json", action="store_true", help="print the plan as JSON")

    s = sub(inner, "apply", "Apply the retention policy now (what the daily scheduler job "
                            "does) and record plan and outcome as retention audit events.",
            cmd_apply)
    s.add_argument("--now", metavar="WHEN", help=when)
    s.add_argument("--yes", action="store_true",
                   help="do not ask for confirmation (required when not on a terminal)")
    s.add_argument("--json", action="store_true", help="print the outcome as JSON")

    holds = subcommands(inner("hold", "Legal holds: records they cover are never redacted, "
                                      "pruned, deleted or erased until released.", None,
                              short="Place, release and list legal holds."), title="action")
    s = sub(holds, "place", "Place a legal hold (recorded as a legal_hold audit event).",
            cmd_hold_place)
    s.add_argument("--scope", required=True, choices=list(SCOPES),
                   help="tenant: all of a tenant's records; document: one document (with "
                        "--tenant); subject: a data subject (an audit event's actor; stored "
                        "as SHA-256); time-range: records from --start to --end")
    s.add_argument("--reason", required=True, help="why (e.g. the matter or inquiry number)")
    s.add_argument("--tenant", help="tenant id (scope tenant, document; narrows time-range)")
    s.add_argument("--doc-id", help="document id (scope document)")
    s.add_argument("--subject", help="data subject identifier (scope subject)")
    s.add_argument("--start", metavar="WHEN", help="inclusive start (scope time-range)")
    s.add_argument("--end", metavar="WHEN", help="exclusive end (scope time-range)")
    s.add_argument("--json", action="store_true", help="print the hold as JSON")

    s = sub(holds, "release", "Release an active hold (it stays on file, with who, when and "
                              "why).", cmd_hold_release)
    s.add_argument("id", metavar="ID", help="the hold id (see `retention hold list`)")
    s.add_argument("--reason", required=True, help="why it is released")

    s = sub(holds, "list", "List the active legal holds.", cmd_hold_list)
    s.add_argument("--json", action="store_true", help="print JSON")
