"""The rerank budget as pure logic."""

from __future__ import annotations

import pytest

from advanced_rag.rerank.budget import RerankCost, plan_rerank


def test_plan_fits_the_budget_between_the_minimum_and_all() -> None:
    kw = {"minimum": 5, "reserve_ms": 5.0}
    assert plan_rerank(20, elapsed_ms=45, target_ms=80, per_passage_ms=3.0, **kw).reranked == 10
    assert plan_rerank(20, elapsed_ms=10, target_ms=80, per_passage_ms=1.0, **kw).reranked == 20
    tight = plan_rerank(20, elapsed_ms=90, target_ms=80, per_passage_ms=3.0, **kw)
    assert tight.reranked == 5 and tight.budget_ms == -15 and "minimum" in tight.reason
    assert plan_rerank(3, elapsed_ms=90, target_ms=80, per_passage_ms=3.0, **kw).reranked == 3
    unknown = plan_rerank(20, elapsed_ms=90, target_ms=80, per_passage_ms=None, **kw)
    assert unknown.reranked == 20 and unknown.budget_ms is None and "unknown" in unknown.reason
    assert plan_rerank(0, elapsed_ms=0, target_ms=80, per_passage_ms=1.0, **kw).reranked == 0


def test_cost_is_an_exponentially_weighted_mean_per_passage() -> None:
    cost = RerankCost(weight=0.5)
    assert cost.per_passage_ms is None
    cost.observe(10, 100.0)
    assert cost.per_passage_ms == pytest.approx(10.0)
    cost.observe(5, 100.0)  # 20 ms each
    assert cost.per_passage_ms == pytest.approx(15.0)
    cost.observe(0, 50.0)
    cost.observe(3, float("nan"))
    assert cost.per_passage_ms == pytest.approx(15.0)


def test_payload_rounds_and_keeps_the_reason() -> None:
    plan = plan_rerank(20, elapsed_ms=45.12345, target_ms=80, per_passage_ms=3.33333,
                       minimum=5, reserve_ms=5.0)
    payload = plan.to_payload()
    assert payload == {"candidates": 20, "reranked": 8, "budget_ms": 29.877,
                       "per_passage_ms": 3.333, "reason": payload["reason"]}
    assert "fits" in payload["reason"]
