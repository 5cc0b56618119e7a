"""The compliance report as Markdown and as one self-contained HTML page with PNG charts.

Both are rendered from the same list of sections (:func:`sections`), so they say the same
thing. Charts (matplotlib, Agg backend, embedded as base64 PNG, as the drift report does):
events per day by type, latency percentiles per stage against the SLA target, faithfulness
and hallucination-risk histograms, and the drift magnitude of the period's drift reports.

``meta`` carries what is known only when the files are written: ``signing`` (``signed``,
``key_id``, ``signature_file`` or ``reason``) and ``sha256`` (the JSON's content digest).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from .model import ActionLog, ComplianceReport, Distribution

__all__ = ["SECTION_TITLES", "render_html", "render_markdown", "sections"]

SECTION_TITLES = (
    "Audit chain verification",
    "Events",
    "Retrieval volume and latency",
    "Answer quality",
    "Drift reports",
    "Retention, legal holds and erasure",
    "Models and configuration",
    "Access denials",
    "Signature",
)

Block = tuple[str, Any]
"""("p", text) | ("alert", text) | ("kv", [(key, value)]) | ("table", (head, rows))."""


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _when(value: Any) -> str:
    return "n/a" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def _counts_table(counts: Mapping[str, int], name: str) -> Block:
    return ("table", ([name, "events"], [[k, f"{v:,}"] for k, v in counts.items()]))


def _chain(report: ComplianceReport) -> list[Block]:
    chain = report.chain
    blocks: list[Block] = []
    if chain.failure is not None:
        f = chain.failure
        blocks.append(("alert", f"AUDIT CHAIN VERIFICATION FAILED at seq {f.seq}: {f.reason} "
                                f"(expected {f.expected!r}, found {f.actual!r}). The log has been "
                                "altered: treat every figure below as unreliable and investigate."))
    else:
        blocks.append(("p", f"The audit chain verified: {chain.events_checked:,} events, every "
                            "hash link and payload digest recomputed."))
    cp = chain.last_checkpoint
    blocks.append(("kv", [
        ("Result", "VERIFIED" if chain.verified else "FAILED"),
        ("Verified at", _when(chain.verified_at)),
        ("Events checked", "n/a (failed)" if chain.events_checked is None
         else f"{chain.events_checked:,}"),
        ("Head seq", f"{chain.head_seq:,}"), ("Head hash", chain.head_hash),
        ("Last signed checkpoint", "none" if cp is None else
         f"seq {cp.seq:,}, {_when(cp.created_at)}, key {cp.key_id}, head {cp.head_hash}"),
        ("Checkpoints checked", str(chain.checkpoints_checked)),
        ("Checkpoint signatures checked", str(chain.signatures_checked)),
        ("Anchor", chain.anchor_status),
        ("Redacted payloads in the chain", f"{chain.redacted_events:,}"),
        ("Verification time", f"{chain.seconds:.2f} s")]))
    return blocks


def _events(report: ComplianceReport) -> list[Block]:
    documents = ", ".join(f"{k} {v:,}" for k, v in report.documents.items())
    return [("kv", [("Total events", f"{report.total_events:,}"),
                    ("Document version updates", f"{report.version_updates:,}"),
                    ("Documents", documents),
                    ("Redacted payloads", f"{report.redacted_payloads:,}"),
                    ("Unreadable payloads", f"{report.unreadable_payloads:,}")]),
            _counts_table(report.events_by_type, "event type"),
            _counts_table(report.events_by_tenant, "tenant"),
            _counts_table(report.events_by_actor, "actor")]


def _retrieval(report: ComplianceReport) -> list[Block]:
    r = report.retrieval
    sla = r.sla
    blocks: list[Block] = [("kv", [
        ("Retrievals", f"{r.requests:,}"), ("Successful", f"{r.ok:,}"),
        ("Failed", f"{r.errors:,}"), ("Without latency (redacted)", f"{r.without_latency:,}"),
        ("SLA target", f"{sla.target_latency_ms:.0f} ms"),
        ("SLA compliance", f"{_pct(sla.compliance_rate)} ({sla.met:,} of {sla.requests:,})"),
        ("Measured as", sla.measured_as)])]
    if r.stages:
        blocks.append(("table", (["stage", "n", "mean ms", "p50 ms", "p95 ms", "p99 ms", "max ms"],
                                 [[s, f"{v.count:,}", _ms(v.mean), _ms(v.p50), _ms(v.p95),
                                   _ms(v.p99), _ms(v.max)] for s, v in r.stages.items()])))
    else:
        blocks.append(("p", "No retrieval latencies were recorded in this period."))
    if r.by_tenant:
        blocks.append(("table", (["tenant", "retrievals"],
                                 [[k, f"{v:,}"] for k, v in r.by_tenant.items()])))
    return blocks


def _dist_row(name: str, d: Distribution | None) -> list[str]:
    if d is None:
        return [name, "0", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"]
    return [name, f"{d.count:,}", _num(d.mean), _num(d.min), _num(d.p10), _num(d.p50),
            _num(d.p90), _num(d.max), " ".join(map(str, d.histogram))]


def _quality(report: ComplianceReport) -> list[Block]:
    q = report.quality

    def share(n: int) -> str:
        return f"{n:,} ({_pct(n / q.answers)})" if q.answers else f"{n:,}"

    return [("kv", [("Answers", f"{q.answers:,}"), ("Flagged", share(q.flagged)),
                    ("Withheld", share(q.withheld)), ("Refused", share(q.refused)),
                    ("Decisions", ", ".join(f"{k} {v:,}" for k, v in q.decisions.items()) or "none"),
                    ("Scored", f"{q.scored:,}"), ("Risk not computed", f"{q.risk_unknown:,}")]),
            ("table", (["score", "n", "mean", "min", "p10", "p50", "p90", "max",
                        "histogram (10 bins over 0–1)"],
                       [_dist_row("faithfulness", q.faithfulness),
                        _dist_row("hallucination risk", q.hallucination_risk)]))]


def _drift(report: ComplianceReport) -> list[Block]:
    if not report.drift_reports:
        return [("p", "No drift report was recorded in this period.")]
    return [("table", (["recorded", "period", "reference", "tenant", "status", "drift",
                        "magnitude", "report sha256"],
                       [[_when(d.occurred_at), d.period or "", d.reference or "", d.tenant or "all",
                         d.status or "", {True: "yes", False: "no", None: "?"}[d.drift_detected],
                         _num(d.magnitude), d.report_sha256 or ""] for d in report.drift_reports]))]


def _actions(name: str, log: ActionLog) -> list[Block]:
    blocks: list[Block] = [("p", f"{name}: {log.count:,} event(s)" + (
        f", by {', '.join(f'{a} {n:,}' for a, n in log.by_actor.items())}" if log.by_actor else "")
        + (f"; the first {len(log.entries):,} are listed" if log.truncated else ""))]
    if log.entries:
        blocks.append(("table", (["seq", "recorded", "actor", "tenant", "details"], [
            [str(e.seq), _when(e.occurred_at), e.actor, e.tenant or "",
             "payload redacted" if e.details is None else
             "; ".join(f"{k}={v}" for k, v in e.details.items())] for e in log.entries])))
    return blocks


def _models(report: ComplianceReport) -> list[Block]:
    blocks: list[Block] = []
    if report.models:
        blocks.append(("table", (["role", "model", "weights sha256", "loads", "first", "last", "when"], [
            [m.role, m.model, m.sha256 or "", str(m.loads), _when(m.first_seen), _when(m.last_seen),
             "loaded before the period" if m.before_period else "in the period"]
            for m in report.models])))
    if report.configs:
        blocks.append(("table", (["config sha256", "loads", "first", "last", "when"], [
            [c.sha256, str(c.loads), _when(c.first_seen), _when(c.last_seen),
             "loaded before the period" if c.before_period else "in the period"]
            for c in report.configs])))
    return blocks or [("p", "No model or configuration load was recorded.")]


def _denials(report: ComplianceReport) -> list[Block]:
    a = report.access_denied
    if not a.count:
        return [("p", "No access was denied in this period.")]
    return [("p", f"{a.count:,} call(s) refused."),
            _counts_table(a.by_actor, "actor"), _counts_table(a.by_tenant, "requested tenant"),
            _counts_table(a.by_operation, "operation")]


def _signature(meta: Mapping[str, Any]) -> list[Block]:
    signing = meta.get("signing") or {}
    blocks: list[Block] = []
    if signing.get("signed"):
        blocks.append(("p", f"The JSON file is signed (Ed25519, key {signing.get('key_id')}): "
                            f"{signing.get('signature_file')}. Check it with `advanced-rag report "
                            "verify FILE.json`."))
    else:
        blocks.append(("alert", f"NOT SIGNED: {signing.get('reason', 'no signing key')}"))
    if meta.get("sha256"):
        blocks.append(("p", f"SHA-256 of the JSON report's canonical content: {meta['sha256']} "
                            "(recorded in the audit log as a compliance_report event)."))
    return blocks


def sections(report: ComplianceReport, meta: Mapping[str, Any]) -> list[tuple[str, list[Block]]]:
    """The report's sections, titled as :data:`SECTION_TITLES`, as renderer-neutral blocks."""
    body = [_chain(report), _events(report), _retrieval(report), _quality(report), _drift(report),
            _actions("Retention", report.retention) + _actions("Legal holds", report.legal_holds)
            + _actions("Erasure", report.erasures),
            _models(report), _denials(report), _signature(meta)]
    return list(zip(SECTION_TITLES, body, strict=True))


def _header(report: ComplianceReport) -> list[tuple[str, str]]:
    return [("Period", f"{report.period}: {_when(report.start)} to {_when(report.end)} (exclusive)"),
            ("Generated", _when(report.generated_at)),
            ("Audit chain", "VERIFIED" if report.chain.verified else "FAILED VERIFICATION")]


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: ComplianceReport, meta: Mapping[str, Any]) -> str:
    lines = [f"# Compliance report {report.period}", ""]
    lines += [f"- **{k}**: {v}" for k, v in _header(report)]
    lines += [f"- **Note**: {n}" for n in report.notes]
    for title, blocks in sections(report, meta):
        lines += ["", f"## {title}"]
        for kind, content in blocks:
            lines.append("")
            if kind == "alert":
                lines.append(f"> **{content}**")
            elif kind == "p":
                lines.append(str(content))
            elif kind == "kv":
                lines += [f"- **{k}**: {_md_cell(v)}" for k, v in content]
            else:
                head, rows = content
                lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# -- charts ----------------------------------------------------------------------------------


def _png(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _events_chart(report: ComplianceReport, plt: Any) -> str | None:
    if not report.total_events:
        return None
    days: list[str] = []
    day = report.start
    while day < report.end and len(days) < 400:
        days.append(day.date().isoformat())
        day += timedelta(days=1)
    days = sorted(set(days) | set(report.events_per_day))
    kinds = list(report.events_by_type)[:7]
    figure, ax = plt.subplots(figsize=(9, 3.4))
    bottom = [0] * len(days)
    series = [(k, [report.events_per_day.get(d, {}).get(k, 0) for d in days]) for k in kinds]
    other = [sum(v for k, v in report.events_per_day.get(d, {}).items() if k not in kinds)
             for d in days]
    if any(other):
        series.append(("other", other))
    for name, values in series:
        ax.bar(range(len(days)), values, bottom=bottom, label=name, width=0.85)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    step = max(1, len(days) // 15)
    ax.set_xticks(range(0, len(days), step), [d[5:] for d in days[::step]], rotation=45, fontsize=8)
    ax.set_ylabel("events")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(figure)


def _latency_chart(report: ComplianceReport, plt: Any) -> str | None:
    stages = report.retrieval.stages
    if not stages:
        return None
    names = list(stages)
    figure, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.27
    for i, pct in enumerate(("p50", "p95", "p99")):
        ax.bar([x + (i - 1) * width for x in range(len(names))],
               [getattr(stages[n], pct) for n in names], width=width, label=pct)
    ax.axhline(report.retrieval.sla.target_latency_ms, color="red", linestyle="--",
               label=f"SLA target {report.retrieval.sla.target_latency_ms:.0f} ms")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("ms")
    ax.legend(fontsize=8)
    return _png(figure)


def _quality_chart(report: ComplianceReport, plt: Any) -> str | None:
    pairs = [(n, d) for n, d in (("faithfulness", report.quality.faithfulness),
                                 ("hallucination risk", report.quality.hallucination_risk)) if d]
    if not pairs:
        return None
    figure, axes = plt.subplots(1, len(pairs), figsize=(4.5 * len(pairs), 3), squeeze=False)
    for ax, (name, dist) in zip(axes[0], pairs, strict=True):
        bins = len(dist.histogram)
        ax.bar([(i + 0.5) / bins for i in range(bins)], dist.histogram, width=0.9 / bins)
        ax.set_xlim(0, 1)
        ax.set_title(f"{name} (n={dist.count:,})")
    return _png(figure)


def _drift_chart(report: ComplianceReport, plt: Any) -> str | None:
    points = [((d.period or f"{d.occurred_at:%m-%d}") + (f" {d.tenant}" if d.tenant else ""),
               d.magnitude) for d in report.drift_reports if d.magnitude is not None]
    if not points:
        return None
    figure, ax = plt.subplots(figsize=(6, 2.8))
    ax.plot([p for p, _ in points], [m for _, m in points], marker="o")
    ax.set_ylim(0, 1)
    ax.set_ylabel("drift magnitude")
    ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    return _png(figure)


def _charts(report: ComplianceReport) -> dict[str, list[tuple[str, str | None, str]]]:
    """Section title → [(chart title, base64 PNG or None, what is missing when None)]."""
    plt = _pyplot()
    return {
        "Events": [("Events per day by type", _events_chart(report, plt),
                    "No events in this period.")],
        "Retrieval volume and latency": [("Latency percentiles per stage",
                                          _latency_chart(report, plt),
                                          "No retrieval latencies in this period.")],
        "Answer quality": [("Faithfulness and hallucination-risk histograms",
                            _quality_chart(report, plt), "No scored answers in this period.")],
        "Drift reports": [("Drift magnitude of the period", _drift_chart(report, plt),
                           "No drift magnitude was measured in this period.")],
    }


def _html_block(kind: str, content: Any) -> str:
    esc = html.escape
    if kind == "alert":
        return f"<p class='alert'>{esc(str(content))}</p>"
    if kind == "p":
        return f"<p>{esc(str(content))}</p>"
    if kind == "kv":
        rows: Sequence[tuple[str, str]] = content
        return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>"
                                   for k, v in rows) + "</table>"
    head, body = content
    return ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                      for row in body) + "</table>")


def render_html(report: ComplianceReport, meta: Mapping[str, Any]) -> str:
    """One HTML page with everything inline (no external files, scripts or fonts)."""
    esc = html.escape
    title = f"Compliance report {esc(report.period)}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
             "body{font-family:sans-serif;max-width:64em;margin:2em auto}table{border-collapse:"
             "collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;"
             "font-size:.9em;word-break:break-all}.alert{color:#fff;background:#b00;padding:.6em;"
             "font-weight:bold}.ok{color:#070;font-weight:bold}</style></head><body>",
             f"<h1>{title}</h1>"]
    if report.chain.verified:
        parts.append("<p class='ok'>Audit chain verified.</p>")
    else:
        parts.append("<p class='alert'>AUDIT CHAIN VERIFICATION FAILED: the audit log has been "
                     "altered. Every figure in this report may be wrong.</p>")
    parts.append(_html_block("kv", _header(report)))
    if report.notes:
        parts.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in report.notes) + "</ul>")
    charts = _charts(report)
    for section, blocks in sections(report, meta):
        parts.append(f"<h2>{esc(section)}</h2>")
        parts += [_html_block(kind, content) for kind, content in blocks]
        for chart, png, missing in charts.get(section, []):
            parts.append(f"<h3>{esc(chart)}</h3>")
            parts.append(f"<p>{esc(missing)}</p>" if png is None else
                         f"<img alt='{esc(chart)}' src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
