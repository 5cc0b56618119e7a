from __future__ import annotations

import math

import pytest

from advanced_rag.eval.metrics import (
    dedupe_ranked,
    evaluate_run,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)


def test_ndcg_by_hand() -> None:
    rels = {"a": 1, "b": 2}
    # ranking b, x, a: DCG = 2/log2(2) + 1/log2(4) = 2.5 ; IDCG = 2 + 1/log2(3)
    expected = 2.5 / (2 + 1 / math.log2(3))
    assert ndcg_at_k(["b", "x", "a"], rels, 10) == pytest.approx(expected)
    assert ndcg_at_k(["b", "a"], rels, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], rels, 10) == 0.0
    assert ndcg_at_k(["x", "a"], rels, 1) == 0.0


def test_recall_and_mrr() -> None:
    rels = {"a": 1, "b": 1, "c": 0}
    assert recall_at_k(["a", "c", "z"], rels, 100) == 0.5
    assert mrr_at_k(["c", "z", "b"], rels, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["c", "z", "b"], rels, 2) == 0.0


def test_evaluate_run_skips_unjudged_and_counts_missing_runs_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    scores = evaluate_run(qrels, {"q1": ["a"]})
    assert scores.queries == 2
    assert scores.ndcg_at_10 == pytest.approx(0.5)
    with pytest.raises(ValueError):
        evaluate_run({"q": {"a": 0}}, {})


def test_dedupe_keeps_best_rank() -> None:
    assert dedupe_ranked(["d1", "d2", "d1", "d3", "d2"]) == ["d1", "d2", "d3"]
