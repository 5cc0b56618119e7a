"""Weekly drift report for cron: the last full ISO week (or --week) against the reference.

    python scripts/weekly_drift_report.py --config config.yaml [--week 2026-W47] [--tenant T]

Writes JSON, Markdown and a self-contained HTML page into drift.report_dir (default
<data_dir>/reports/drift), records the report and its SHA-256 as a drift_report audit event.
Exit codes: 0 no drift (or too little data — the report says so), 3 drift detected, 1 error.

crontab (Monday 06:00):
    0 6 * * 1  cd /srv/rag && .venv/bin/python scripts/weekly_drift_report.py --config config.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advanced_rag.cli import _load  # noqa: E402
from advanced_rag.cli.drift import summary_lines  # noqa: E402
from advanced_rag.drift.weekly import weekly_report  # noqa: E402
from advanced_rag.errors import AdvancedRagError  # noqa: E402

EXIT_ERROR = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help="YAML config (default: ./config.yaml "
                                                         "if present, else built-in defaults)")
    parser.add_argument("--week", metavar="YYYY-Www", help="ISO week (default: last full week)")
    parser.add_argument("--tenant", help="only this tenant's queries")
    parser.add_argument("--out-dir", metavar="DIR", help="default: drift.report_dir")
    parser.add_argument("--actor", default="cron:weekly_drift_report",
                        help="recorded in the audit log")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(weekly_report(_load(args.config), week=args.week, tenant=args.tenant,
                                           actor=args.actor, out_dir=args.out_dir))
    except AdvancedRagError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_ERROR
    print(f"week {result.period} vs reference {result.reference!r}")
    print("\n".join(summary_lines(result.report)))
    for kind, path in result.files.items():
        print(f"{kind}: {path}")
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
