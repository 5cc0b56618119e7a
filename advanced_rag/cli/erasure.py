"""``advanced-rag erasure …``: erase a data subject (GDPR Art. 17), show its status, make a KEK.

``erasure erase SUBJECT --reason …`` destroys the subject's key (its encrypted queries and
answers become unreadable; the audit chain still verifies), deletes its query-log rows and
records an ``erasure`` event. It asks for confirmation unless ``--yes``. Exit codes: 0 done,
1 refused (a legal hold covers the subject) or failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Callable
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _manager(args: argparse.Namespace) -> Any:
    from compliance.manager import ComplianceManager

    from . import _load

    return ComplianceManager(_load(args.config))


def _confirmed(subject: str) -> bool:
    if not sys.stdin.isatty():
        sys.stderr.write("refusing to erase without confirmation: pass --yes (stdin is not a "
                         "terminal)\n")
        return False
    sys.stderr.write(f"Erasing makes every recorded query and answer of {subject!r} unreadable, "
                     "for good.\nType the subject id again to confirm: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip() == subject


async def cmd_erase(args: argparse.Namespace) -> int:
    from compliance.erasure.erase import SubjectHeldError

    if not args.yes and not _confirmed(args.subject):
        return EXIT_USAGE
    async with _manager(args) as cm:
        try:
            report = await cm.erase_subject(args.subject, actor=args.actor, reason=args.reason)
        except SubjectHeldError as exc:
            if args.json:
                _out(json.dumps({"ok": False, "refused": True, "hold_id": exc.hold.id,
                                 "hold_scope": exc.hold.scope, "message": str(exc)}))
            else:
                sys.stderr.write(f"{exc}\n")
            return EXIT_FAILED
    if args.json:
        _out(json.dumps({"ok": True, "subject_ref": report.subject_ref,
                         "key_ids": list(report.key_ids),
                         "events_shredded": report.events_shredded,
                         "events_redacted": report.events_redacted,
                         "query_log_rows_deleted": report.query_log_rows_deleted,
                         "drift_references": list(report.drift_references),
                         "erased_at": report.erased_at.isoformat(),
                         "event_id": report.event_id}, sort_keys=True))
        return EXIT_OK
    _out(f"subject {report.subject_ref[:16]}… erased: {len(report.key_ids)} key(s) destroyed, "
         f"{report.events_shredded} encrypted event(s) now unreadable, {report.events_redacted} "
         f"plaintext payload(s) redacted, {report.query_log_rows_deleted} query-log row(s) "
         f"deleted; recorded as erasure event {report.event_id}")
    if not report.key_ids and not report.events_redacted:
        _out("note: no live key and no plaintext found for this subject (never seen, or erased "
             "already)")
    if report.drift_references:
        _out(f"warning: drift reference(s) {', '.join(report.drift_references)} still hold rows "
             "copied from this subject's queries: recapture them "
             "(advanced-rag drift reference capture --replace)")
    return EXIT_OK


async def cmd_status(args: argparse.Namespace) -> int:
    async with _manager(args) as cm:
        status = await cm.erasure_status(args.subject)
    keys = [{"key_id": k.kid, "wrapping": k.wrapping, "kek_id": k.kek_id,
             "created_at": k.created_at.isoformat(),
             "destroyed_at": k.destroyed_at.isoformat() if k.destroyed_at else None,
             "destroyed_by": k.destroyed_by, "reason": k.reason} for k in status.keys]
    if args.json:
        _out(json.dumps({"subject_ref": status.subject_ref, "erased": status.erased,
                         "keys": keys, "events": status.events,
                         "query_log_rows": status.query_log_rows,
                         "holds": [{"id": h.id, "scope": h.scope, "reason": h.reason}
                                   for h in status.holds]}, sort_keys=True))
        return EXIT_OK
    state = "erased" if status.erased else ("has a live key" if status.keys else "no key")
    _out(f"subject {status.subject_ref[:16]}…: {state}; {status.events} audit event(s), "
         f"{status.query_log_rows} query-log row(s)")
    for key in keys:
        when = (f"destroyed {key['destroyed_at']} by {key['destroyed_by']}: {key['reason']}"
                if key["destroyed_at"] else "live")
        _out(f"  key {key['key_id']}  created {key['created_at']}  wrapping {key['wrapping']}"
             f"  {when}")
    for hold in status.holds:
        _out(f"  HELD: {hold.describe()}")
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    _out(base64.b64encode(os.urandom(32)).decode("ascii"))
    sys.stderr.write("a new key-encryption key (base64, 32 bytes): store it in your secrets "
                     "manager and export it as erasure.key_encryption_key_env names "
                     "(default ADVANCED_RAG_KEK). Losing it makes every encrypted payload "
                     "unreadable.\n")
    return EXIT_OK


def add_commands(command: Callable[[str, str, Any], argparse.ArgumentParser]) -> None:
    from . import default_actor, subcommands

    p = command("erasure", "Erase a data subject by crypto-shredding (GDPR Art. 17).", None)
    group = subcommands(p)

    def sub(name: str, text: str, handler: Any) -> argparse.ArgumentParser:
        s = group(name, text, handler)
        s.add_argument("--json", action="store_true", help="print the result as JSON")
        return s

    s = sub("erase", "Destroy SUBJECT's key (its recorded queries and answers become "
                     "unreadable; the chain still verifies), delete its query-log rows, record "
                     "an erasure event. Refused while a legal hold covers it.", cmd_erase)
    s.add_argument("subject", metavar="SUBJECT", help="the actor id the subject's calls were "
                                                      "recorded under")
    s.add_argument("--reason", required=True, help="why (recorded; e.g. the request ticket)")
    s.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    s.add_argument("--actor", default=default_actor(), help="who erases (recorded; default: "
                                                            "%(default)s)")

    s = sub("status", "Show SUBJECT's keys (live or destroyed), events, query-log rows and "
                      "the legal holds covering it.", cmd_status)
    s.add_argument("subject", metavar="SUBJECT")

    group("keygen", "Print a new random key-encryption key (base64).", cmd_keygen, config=False)
