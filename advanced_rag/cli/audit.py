"""``advanced-rag audit …``: init, verify, tail, export, verify-export, checkpoint, keygen.

``audit verify`` exits 1 when the chain fails verification (naming the first bad sequence
number), so cron and CI can alert on it; every verification is itself recorded as an
``audit_verified`` event unless ``--no-record``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from ..errors import InputError

EXIT_OK, EXIT_FAILED = 0, 1


def parse_when(text: str) -> datetime:
    """``2026-11-01`` (midnight UTC) or an ISO 8601 datetime; no offset means UTC."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{text!r} is not a date (2026-11-01) or ISO datetime "
                         "(2026-11-01T09:30:00+00:00)") from None
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


def _manager(args: argparse.Namespace) -> Any:
    from compliance.manager import ComplianceManager

    from . import _load

    return ComplianceManager(_load(args.config))


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


async def cmd_init(args: argparse.Namespace) -> int:
    async with _manager(args) as cm:
        head = await cm.store.head()
    _out(f"audit store ready: {cm.store!r}, {head.seq:,} events, tables and append-only "
         "triggers in place")
    return EXIT_OK


async def cmd_verify(args: argparse.Namespace) -> int:
    from compliance.errors import AuditIntegrityError

    async with _manager(args) as cm:
        try:
            report = await cm.verify_audit_log(anchor=args.anchor, public_key=args.public_key,
                                               actor=args.actor, record=not args.no_record)
        except AuditIntegrityError as exc:
            if args.json:
                _out(json.dumps({"ok": False, "seq": exc.seq, "reason": exc.reason,
                                 "expected": exc.expected, "actual": exc.actual}))
            else:
                sys.stderr.write(f"AUDIT CHAIN INVALID at seq {exc.seq}: {exc.reason}\n"
                                 f"  expected: {exc.expected}\n  actual:   {exc.actual}\n")
            return EXIT_FAILED
    checkpoint = report.last_valid_checkpoint
    if args.json:
        _out(json.dumps({"ok": True, "events_checked": report.events_checked,
                         "last_seq": report.last_seq, "head_hash": report.head_hash,
                         "checkpoints_checked": report.checkpoints_checked,
                         "signatures_checked": report.signatures_checked,
                         "anchor_lines_checked": report.anchor_lines_checked,
                         "redacted_events": report.redacted_events,
                         "last_valid_checkpoint_seq": checkpoint.seq if checkpoint else None,
                         "seconds": report.seconds}))
    else:
        _out(f"audit chain OK: {report.events_checked:,} events (last seq {report.last_seq}), "
             f"head {report.head_hash[:16]}…, {report.checkpoints_checked} checkpoints, "
             f"{report.signatures_checked} signatures, {report.anchor_lines_checked} anchor "
             f"lines, {report.redacted_events} redacted payloads, {report.seconds:.2f} s")
        if args.anchor is None and cm.config.audit.anchor is None:
            _out("note: no anchor file given: a rewrite of the whole database with recomputed "
                 "hashes is only caught against an anchor (--anchor)")
    return EXIT_OK


async def cmd_tail(args: argparse.Namespace) -> int:
    async with _manager(args) as cm:
        records = await cm.query_audit_logs(event_type=args.type, tenant=args.tenant,
                                            actor=args.actor, limit=args.n, newest_first=True)
    for record in reversed(records):
        if args.json:
            _out(json.dumps({"seq": record.seq, "event_id": record.event_id,
                             "occurred_at": record.occurred_at.isoformat(),
                             "event_type": str(record.event_type), "actor": record.actor,
                             "tenant": record.tenant, "request_id": record.request_id,
                             "parent_event_id": record.parent_event_id,
                             "payload": None if record.payload is None else dict(record.payload),
                             "entry_hash": record.entry_hash}, sort_keys=True))
        else:
            # the payload as shown to people: personal data decrypted, or "[erased]"
            payload = ("[redacted]" if record.payload is None else
                       json.dumps(dict(record.payload), sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False))
            payload = payload if len(payload) <= 160 else payload[:157] + "..."
            _out(f"{record.seq:>8}  {record.occurred_at:%Y-%m-%d %H:%M:%S}Z  "
                 f"{record.event_type:<18} {record.actor:<14} {record.tenant or '-':<12} {payload}")
    return EXIT_OK


async def cmd_export(args: argparse.Namespace) -> int:
    start = parse_when(args.start) if args.start else None
    end = parse_when(args.end) if args.end else None
    async with _manager(args) as cm:
        report = await cm.export_audit_log(args.output, start_time=start, end_time=end,
                                           anchor=args.anchor, public_key=args.public_key,
                                           overwrite=args.overwrite)
    _out(f"wrote {report.events:,} events (seq {report.first_seq}..{report.last_seq}) to "
         f"{report.path}; chain verified ({report.verification.events_checked:,} events); "
         f"file sha256 {report.sha256}")
    return EXIT_OK


def cmd_verify_export(args: argparse.Namespace) -> int:
    from compliance.audit.export import verify_export
    from compliance.errors import AuditIntegrityError

    try:
        check = verify_export(args.file)
    except AuditIntegrityError as exc:
        sys.stderr.write(f"EXPORT INVALID at seq {exc.seq}: {exc.reason}\n")
        return EXIT_FAILED
    _out(f"export OK: {check.events:,} events (seq {check.first_seq}..{check.last_seq}), "
         f"head {check.head_hash}")
    return EXIT_OK


async def cmd_checkpoint(args: argparse.Namespace) -> int:
    async with _manager(args) as cm:
        cp = await cm.checkpoint()
    _out(f"checkpoint seq {cp.seq} head {cp.head_hash} key {cp.key_id} at {cp.created_at_text}")
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    from pathlib import Path

    from compliance.audit.checkpoints import CheckpointSigner

    target = Path(args.output)
    if target.exists():
        sys.stderr.write(f"{target} exists; refusing to overwrite a signing key\n")
        return 2
    signer = CheckpointSigner.generate()
    signer.save(target)
    _out(f"wrote {target} (keep it off the database host); public key {signer.public_key_hex}")
    return EXIT_OK


def add_commands(command: Callable[[str, str, Any], argparse.ArgumentParser]) -> None:
    from . import default_actor, subcommands

    p = command("audit", "Verify, read and export the tamper-evident audit log.", None)
    sub = subcommands(p)

    def keys(s: argparse.ArgumentParser) -> None:
        s.add_argument("--anchor", metavar="FILE", help="anchor JSONL of signed checkpoints "
                                                        "(default: audit.anchor)")
        s.add_argument("--public-key", metavar="HEX|PEM",
                       help="pin the checkpoint signing key (hex or PEM text)")

    sub("init", "Create the audit tables and append-only triggers if missing (run once as the "
                "schema owner; with audit.create false it only checks they exist).", cmd_init)

    s = sub("verify", "Check every hash, link and signed checkpoint; exit 1 on tampering.",
            cmd_verify)
    keys(s)
    s.add_argument("--actor", default=default_actor(), help="who ran it (recorded)")
    s.add_argument("--no-record", action="store_true",
                   help="do not append an audit_verified event (read-only check)")
    s.add_argument("--json", action="store_true", help="print the report as JSON")

    s = sub("tail", "Print the newest events, oldest first.", cmd_tail)
    s.add_argument("-n", type=int, default=20, help="how many (default 20)")
    s.add_argument("--type", help="only this event type (e.g. retrieval, access_denied)")
    s.add_argument("--tenant", help="only this tenant")
    s.add_argument("--actor", help="only this actor")
    s.add_argument("--json", action="store_true", help="one JSON object per line")

    s = sub("export", "Verify the chain, then write a time range as JSONL an auditor can "
                      "re-check offline (`audit verify-export`).", cmd_export)
    s.add_argument("--output", required=True, metavar="FILE")
    s.add_argument("--from", dest="start", metavar="WHEN",
                   help="inclusive: 2026-11-01 or an ISO datetime (UTC if no offset)")
    s.add_argument("--to", dest="end", metavar="WHEN", help="exclusive, same format")
    s.add_argument("--overwrite", action="store_true", help="replace an existing file")
    keys(s)

    s = sub("verify-export", "Re-check an export file without the database.", cmd_verify_export,
            config=False)
    s.add_argument("file", metavar="FILE")

    sub("checkpoint", "Sign the current chain head now (needs a signing key) and append it "
                      "to the anchor file.", cmd_checkpoint)

    s = sub("keygen", "Write a new Ed25519 checkpoint signing key (PEM).", cmd_keygen,
            config=False)
    s.add_argument("--output", required=True, metavar="FILE")
