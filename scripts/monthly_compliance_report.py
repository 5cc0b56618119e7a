"""Monthly compliance report for cron: the last full calendar month (UTC), or --month.

    python scripts/monthly_compliance_report.py --config config.yaml [--month 2026-10]

Verifies the whole audit chain, then writes compliance-<YYYY-MM>.{json,md,html} into
<data_dir>/reports/compliance (or --out-dir), signs the JSON with the audit signing key
(compliance-<YYYY-MM>.json.sig; with no key configured it says so and carries on) and records
the report's SHA-256 as a compliance_report audit event.

Exit codes: 0 written and the audit chain verified; 4 written, but the audit chain FAILED
verification (the report says so on top of every file); 1 error; 2 bad usage or configuration.

crontab (03:00 UTC on the 1st):
    0 3 1 * *  cd /srv/rag && .venv/bin/python scripts/monthly_compliance_report.py --config config.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advanced_rag.cli import _load, report_error  # noqa: E402
from advanced_rag.cli.report import monthly_lines  # noqa: E402
from advanced_rag.errors import AdvancedRagError  # noqa: E402
from compliance.reports import write_monthly_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help="YAML config (default: ./config.yaml "
                                                         "if present, else built-in defaults)")
    parser.add_argument("--month", metavar="YYYY-MM", help="default: the last full month (UTC)")
    parser.add_argument("--out-dir", metavar="DIR", help="default: <data_dir>/reports/compliance")
    parser.add_argument("--public-key", metavar="HEX|PEM",
                        help="pin the checkpoint signing key chain verification accepts")
    parser.add_argument("--actor", default="cron:monthly_compliance_report",
                        help="recorded in the audit log")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(write_monthly_report(_load(args.config), month=args.month,
                                                  out_dir=args.out_dir, actor=args.actor,
                                                  public_key=args.public_key))
    except AdvancedRagError as exc:
        return report_error(exc)
    lines = monthly_lines(result)
    if result.report.chain.failure is not None:
        sys.stderr.write(lines[0] + "\n")
    print("\n".join(lines))
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
