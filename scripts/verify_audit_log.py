#!/usr/bin/env python3
"""Verify the audit chain from cron: exit 0 when intact, 1 on any integrity failure, 2 on a
configuration error. Every run is itself recorded as an ``audit_verified`` event.

    # crontab: every night at 02:15, alert on a non-zero exit
    15 2 * * *  /opt/rag/.venv/bin/python /opt/rag/scripts/verify_audit_log.py \\
                    --config /etc/rag/config.yaml --anchor /mnt/worm/audit-anchor.jsonl

Same as ``advanced-rag audit verify``; kept as a script so a cron line needs no PATH set-up.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help="YAML config (default: ./config.yaml "
                                                         "if present, else built-in defaults)")
    parser.add_argument("--anchor", metavar="FILE", help="anchor JSONL (default: audit.anchor)")
    parser.add_argument("--public-key", metavar="HEX|PEM", help="pin the checkpoint signing key")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--no-record", action="store_true",
                        help="read-only: do not append an audit_verified event")
    args = parser.parse_args(argv)
    from advanced_rag.cli import main as cli

    forwarded = ["audit", "verify", "--actor", "cron:verify_audit_log"]
    for flag, value in (("--config", args.config), ("--anchor", args.anchor),
                        ("--public-key", args.public_key)):
        if value is not None:
            forwarded += [flag, value]
    forwarded += ["--json"] if args.json else []
    forwarded += ["--no-record"] if args.no_record else []
    return cli(forwarded)


if __name__ == "__main__":
    sys.exit(main())
