"""The weekly drift report as Markdown and as one self-contained HTML page with PNG charts.

Charts (matplotlib, Agg backend, embedded as base64 PNG): reference vs current histograms of
each tested score, a 2-D PCA scatter (PCA fitted on the reference), every test's p-value and
Holm-adjusted p-value against α (log scale), and the drift magnitude of past weeks.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .detector import DriftReport, Window

__all__ = ["render_html", "render_markdown"]

Trend = Sequence[tuple[str, float | None]]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _header(report: DriftReport, meta: Mapping[str, Any], reference: Window,
            current: Window) -> list[tuple[str, str]]:
    def span(w: Window) -> str:
        if w.start is None or w.end is None:
            return f"{len(w.ids)} queries"
        return f"{len(w.ids)} queries, {w.start:%Y-%m-%d %H:%M} – {w.end:%Y-%m-%d %H:%M} UTC"

    return [("Period", str(meta["period"])),
            ("Tenant", str(meta.get("tenant") or "all")),
            ("Reference", f"{meta['reference']} ({meta.get('reference_description', '')})"),
            ("Reference window", span(reference)), ("Current window", span(current)),
            ("Status", str(report.status)), ("Drift detected", str(report.drift_detected)),
            ("Drift magnitude", _fmt(report.drift_magnitude)),
            ("α (family-wise, Holm–Bonferroni)", str(report.alpha))]


def _test_rows(report: DriftReport) -> list[list[str]]:
    return [[o.result.family, o.result.name, f"{o.result.statistic:.4g}", f"{o.result.p_value:.4g}",
             f"{o.adjusted_p:.4g}", f"{o.result.effect_size:.3f}",
             f"{o.result.n_reference}/{o.result.n_current}", "yes" if o.rejected else "no"]
            for o in report.tests]


_TEST_HEAD = ["family", "test", "statistic", "p", "Holm p", "effect", "n ref/cur", "rejected"]


def render_markdown(report: DriftReport, meta: Mapping[str, Any], trend: Trend,
                    reference: Window, current: Window) -> str:
    lines = [f"# Drift report {meta['period']}", ""]
    lines += [f"- **{k}**: {v}" for k, v in _header(report, meta, reference, current)]
    if report.reason:
        lines += ["", f"**Not tested:** {report.reason}"]
    if report.tests:
        lines += ["", "## Tests", "", "| " + " | ".join(_TEST_HEAD) + " |",
                  "|" + "---|" * len(_TEST_HEAD)]
        lines += ["| " + " | ".join(row) + " |" for row in _test_rows(report)]
    if report.recommendations:
        lines += ["", "## Recommendations", ""] + [f"- {r}" for r in report.recommendations]
    if report.affected_queries:
        lines += ["", "## Current queries farthest from the reference", "",
                  "Retrieval audit event ids (the audit log holds each query):", ""]
        lines += [f"- `{q.id}` distance {q.distance:.3f}" for q in report.affected_queries]
    lines += ["", "## Drift magnitude by week", "", "| week | magnitude |", "|---|---|"]
    lines += [f"| {period} | {_fmt(value)} |" for period, value in trend]
    return "\n".join(lines) + "\n"


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _charts(report: DriftReport, trend: Trend, reference: Window, current: Window,
            alpha: float) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: list[tuple[str, str]] = []
    keys = [k for k in reference.scores if k in current.scores]
    if keys:
        figure, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3), squeeze=False)
        for ax, key in zip(axes[0], keys, strict=True):
            both = np.concatenate([reference.scores[key], current.scores[key]])
            bins = np.histogram_bin_edges(both, bins=20)
            ax.hist(reference.scores[key], bins=bins, alpha=0.55, density=True, label="reference")
            ax.hist(current.scores[key], bins=bins, alpha=0.55, density=True, label="current")
            ax.set_title(key)
            ax.legend(fontsize=8)
        charts.append(("Score distributions, reference vs current", _png(figure)))
    if len(reference.ids) >= 3 and len(current.ids):
        mean = reference.embeddings.mean(axis=0)
        _, _, vt = np.linalg.svd(reference.embeddings - mean, full_matrices=False)
        figure, ax = plt.subplots(figsize=(5, 4))
        for window, name in ((reference, "reference"), (current, "current")):
            xy = (window.embeddings - mean) @ vt[:2].T
            ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.6, label=name)
        ax.set_xlabel("PC1 (of the reference)")
        ax.set_ylabel("PC2")
        ax.legend(fontsize=8)
        charts.append(("Query embeddings, 2-D PCA fitted on the reference", _png(figure)))
    if report.tests:
        names = [f"{o.result.family}:{o.result.name}" for o in report.tests]
        figure, ax = plt.subplots(figsize=(6, 0.45 * len(names) + 1))
        y = np.arange(len(names))
        floor = 1e-6
        ax.barh(y - 0.2, [max(o.result.p_value, floor) for o in report.tests], height=0.4,
                label="p")
        ax.barh(y + 0.2, [max(o.adjusted_p, floor) for o in report.tests], height=0.4,
                label="Holm-adjusted p")
        ax.axvline(alpha, color="red", linestyle="--", label=f"α = {alpha}")
        ax.set_xscale("log")
        ax.set_yticks(y, names, fontsize=8)
        ax.legend(fontsize=8)
        charts.append(("p-values against α", _png(figure)))
    points = [(p, v) for p, v in trend if v is not None]
    if points:
        figure, ax = plt.subplots(figsize=(6, 2.8))
        ax.plot([p for p, _ in points], [v for _, v in points], marker="o")
        ax.set_ylim(0, 1)
        ax.set_ylabel("drift magnitude")
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
        charts.append(("Drift magnitude by week", _png(figure)))
    return charts


def render_html(report: DriftReport, meta: Mapping[str, Any], trend: Trend, reference: Window,
                current: Window, *, alpha: float) -> str:
    """One HTML page with everything inline (no external files, scripts or fonts)."""
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>"
                   for k, v in _header(report, meta, reference, current))
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Drift report "
             f"{esc(str(meta['period']))}</title><style>body{{font-family:sans-serif;"
             "max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:"
             "1px solid #ccc;padding:.25em .6em;text-align:left}}.drift{{color:#b00}}</style>"
             f"</head><body><h1>Drift report {esc(str(meta['period']))}</h1>",
             f"<p class='{'drift' if report.drift_detected else ''}'><b>"
             f"{'Drift detected' if report.drift_detected else esc(str(report.status))}</b></p>",
             f"<table>{rows}</table>"]
    if report.reason:
        parts.append(f"<p><b>Not tested:</b> {esc(report.reason)}</p>")
    if report.tests:
        head = "".join(f"<th>{esc(h)}</th>" for h in _TEST_HEAD)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                       for row in _test_rows(report))
        parts.append(f"<h2>Tests</h2><table><tr>{head}</tr>{body}</table>")
    if report.recommendations:
        parts.append("<h2>Recommendations</h2><ul>" + "".join(
            f"<li>{esc(r)}</li>" for r in report.recommendations) + "</ul>")
    if report.affected_queries:
        parts.append("<h2>Current queries farthest from the reference</h2><p>Retrieval audit "
                     "event ids (the audit log holds each query):</p><ul>" + "".join(
                         f"<li><code>{esc(q.id)}</code> distance {q.distance:.3f}</li>"
                         for q in report.affected_queries) + "</ul>")
    for title, png in _charts(report, trend, reference, current, alpha):
        parts.append(f"<h2>{esc(title)}</h2><img alt='{esc(title)}' "
                     f"src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
