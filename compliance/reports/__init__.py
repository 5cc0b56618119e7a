"""Compliance reporting from the audit log: the monthly report and latency trends.

- :func:`build_compliance_report` / ``ComplianceManager.generate_compliance_report`` — a typed
  :class:`ComplianceReport` for ``[start, end)``: chain verification, event counts, retrieval
  latency and SLA, answer quality, drift, retention / legal-hold / erasure actions, models and
  configs in use, access denials.
- :func:`write_monthly_report` — JSON + Markdown + self-contained HTML (charts), the JSON
  signed with the audit signing key (detached ``.sig``), its digest recorded as a
  ``compliance_report`` audit event; :func:`verify_report_file` checks a written report.
- :func:`analyze_performance` / :func:`performance_report` — per-stage p50/p95/p99 and SLA
  compliance per day, week or month, as a table and a PNG chart.

Example::

    from compliance.reports import verify_report_file, write_monthly_report

    result = await write_monthly_report(load_config("config.yaml"), month="2026-10")
    result.exit_code                      # 0, or 4 when the audit chain failed verification
    verify_report_file(result.files["json"]).ok
"""

from __future__ import annotations

from .collect import build_compliance_report, check_chain
from .model import (
    AccessDenials,
    ActionEntry,
    ActionLog,
    ChainFailure,
    ChainStatus,
    CheckpointInfo,
    ComplianceReport,
    ConfigInUse,
    Distribution,
    DriftEntry,
    ModelInUse,
    QualitySummary,
    RetrievalSummary,
    SlaSummary,
)
from .monthly import (
    EXIT_CHAIN_INVALID,
    MonthlyReportResult,
    last_full_month,
    month_bounds,
    scheduled_monthly_report,
    write_monthly_report,
)
from .performance import (
    PerformanceBucket,
    PerformanceTrend,
    analyze_performance,
    format_table,
    performance_report,
    render_chart,
)
from .render import SECTION_TITLES, render_html, render_markdown
from .signing import ReportSigner, ReportVerification, content_digest, verify_report_file

__all__ = [
    "EXIT_CHAIN_INVALID",
    "SECTION_TITLES",
    "AccessDenials",
    "ActionEntry",
    "ActionLog",
    "ChainFailure",
    "ChainStatus",
    "CheckpointInfo",
    "ComplianceReport",
    "ConfigInUse",
    "Distribution",
    "DriftEntry",
    "ModelInUse",
    "MonthlyReportResult",
    "PerformanceBucket",
    "PerformanceTrend",
    "QualitySummary",
    "ReportSigner",
    "ReportVerification",
    "RetrievalSummary",
    "SlaSummary",
    "analyze_performance",
    "build_compliance_report",
    "check_chain",
    "content_digest",
    "format_table",
    "last_full_month",
    "month_bounds",
    "performance_report",
    "render_chart",
    "render_html",
    "render_markdown",
    "scheduled_monthly_report",
    "verify_report_file",
    "write_monthly_report",
]
