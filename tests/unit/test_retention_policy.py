"""Retention decisions (compliance.retention.policy) as pure functions: cut-offs, the pruned
prefix, holds per record, report-file tenants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from advanced_rag.config import RetentionRule
from compliance.errors import RetentionError
from compliance.retention.holds import Hold
from compliance.retention.policy import (
    AuditRow,
    Row,
    doc_ids_of,
    plan_audit_events,
    plan_rows,
    report_file_tenant,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
RULE = RetentionRule(keep_days=100, action="prune")


def hold(hold_id: str, scope: str, **fields: object) -> Hold:
    base: dict[str, object] = {"tenant": None, "doc_id": None, "subject_ref": None,
                               "start": None, "end": None}
    base.update(fields)
    return Hold(hold_id, scope, base["tenant"], base["doc_id"], base["subject_ref"],  # type: ignore[arg-type]
                base["start"], base["end"], "reason " + hold_id, "legal", NOW)  # type: ignore[arg-type]


def row(seq: int, days: int, tenant: str = "a", *, redacted: bool = False,
        docs: tuple[str, ...] = ()) -> AuditRow:
    return AuditRow(seq, NOW - timedelta(days=days), "svc", tenant, docs, redacted)


def test_prune_takes_the_due_prefix_and_redacts_what_a_held_event_strands() -> None:
    rows = [row(1, 300), row(2, 300, redacted=True), row(3, 250, "held"), row(4, 200),
            row(5, 50), row(6, 150)]  # 6: clock skew, older than 5
    plan = plan_audit_events(rows, RULE, now=NOW, holds=[hold("h1", "tenant", tenant="held")])
    assert plan.cutoff == NOW - timedelta(days=100)
    assert (plan.prune_through, plan.targets, plan.redact_instead) == (2, (4, 6), 2)
    assert (plan.candidates, plan.selected) == (5, 4)
    assert [(h.hold_id, h.records) for h in plan.held] == [("h1", 1)]
    assert "seq 3 is held (h1)" in plan.notes[0]


def test_prune_stops_at_a_recent_event_and_counts_from_the_last_prune_point() -> None:
    plan = plan_audit_events([row(11, 300), row(12, 5), row(13, 300)], RULE, now=NOW, holds=[],
                             pruned_through=10)
    assert (plan.prune_through, plan.targets, plan.selected) == (11, (13,), 2)
    assert "seq 12 is within the retention period" in plan.notes[1]


def test_redact_skips_redacted_and_matches_holds_on_documents() -> None:
    rule = RetentionRule(keep_days=100, action="redact")
    rows = [row(1, 300, redacted=True), row(2, 300, "b", docs=("kyc-1",)), row(3, 300)]
    plan = plan_audit_events(rows, rule, now=NOW,
                             holds=[hold("d", "document", tenant="b", doc_id="kyc-1")])
    assert (plan.prune_through, plan.targets, plan.skipped) == (None, (3,), 1)
    assert [h.hold_id for h in plan.held] == ["d"]
    with pytest.raises(RetentionError, match="signing key"):
        plan_audit_events(rows, RULE, now=NOW, holds=[], can_prune=False)
    with pytest.raises(RetentionError, match="naive"):
        plan_audit_events(rows, rule, now=NOW.replace(tzinfo=None), holds=[])


def test_plan_rows_selects_due_unheld_records() -> None:
    window = hold("w", "time_range", start=NOW - timedelta(days=40), end=NOW - timedelta(days=30))
    rows = [Row(1, NOW - timedelta(days=50)), Row(2, NOW - timedelta(days=35)),
            Row(3, NOW - timedelta(days=5))]
    plan = plan_rows("query_log", "query_log", RetentionRule(keep_days=20, action="prune"), rows,
                     now=NOW, holds=[window])
    assert (plan.candidates, plan.selected, plan.targets) == (2, 1, (1,))
    assert plan.to_dict()["held"] == [{"hold_id": "w", "hold": window.describe(), "records": 1}]
    assert "targets" not in plan.to_dict()


def test_report_file_tenants_and_payload_documents() -> None:
    assert report_file_tenant(Path("drift-2026-W47-bank-a.html")) == "bank-a"
    assert report_file_tenant(Path("drift-2026-W47.json")) is None
    assert doc_ids_of({"doc_id": "a", "doc_ids": ["b", 3]}) == ("a", "b")
    assert doc_ids_of(None) == ()
