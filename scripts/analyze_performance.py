"""Retrieval latency trends from the audit log, for cron or by hand.

    python scripts/analyze_performance.py --config config.yaml --period daily|weekly|monthly \
        [--from 2026-10-01 --to 2026-11-01] [--output latency.png]

Per-stage p50/p95/p99 latency and SLA compliance (pipeline.target_latency_ms) per day, ISO week
or calendar month (UTC), from the recorded retrieval events: printed as a table and drawn as a
PNG chart (default <data_dir>/reports/performance/performance-<period>-<from>-<to>.png).
Default range: the last 30 full days, 12 full weeks or 12 full months.

Exit codes: 0 ok, 1 error, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advanced_rag.cli import _load, report_error  # noqa: E402
from advanced_rag.cli.audit import parse_when  # noqa: E402
from advanced_rag.errors import AdvancedRagError  # noqa: E402
from compliance.reports import format_table, performance_report  # noqa: E402
from compliance.reports.performance import GRANULARITIES  # noqa: E402

EXIT_OK = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", help="YAML config (default: ./config.yaml "
                                                         "if present, else built-in defaults)")
    parser.add_argument("--period", choices=GRANULARITIES, default="daily",
                        help="bucket size (default: daily)")
    parser.add_argument("--from", dest="start", metavar="WHEN",
                        help="2026-10-01 or an ISO datetime, UTC if no offset")
    parser.add_argument("--to", dest="end", metavar="WHEN", help="exclusive end, same format")
    parser.add_argument("--output", metavar="FILE.png", help="where to write the chart")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    try:
        trend, png = asyncio.run(performance_report(
            _load(args.config), granularity=args.period,
            start=parse_when(args.start) if args.start else None,
            end=parse_when(args.end) if args.end else None, output=args.output))
    except AdvancedRagError as exc:
        return report_error(exc)
    if args.json:
        print(json.dumps({**trend.to_dict(), "chart": str(png)}, indent=2))
    else:
        print(format_table(trend))
        print(f"chart: {png}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
