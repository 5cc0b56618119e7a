"""The drift verdict: insufficient data, Holm–Bonferroni, determinism, the report's data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from advanced_rag.config import DriftSettings
from advanced_rag.drift import detector
from advanced_rag.drift.detector import (
    DriftStatus,
    Window,
    adjudicate,
    affected_queries,
    detect,
    permutations_needed,
)
from advanced_rag.drift.stats import TestResult
from advanced_rag.errors import InputError

SETTINGS = DriftSettings(min_reference=40, min_current=30, permutations=200, affected_queries=5)
START, END = datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 12, tzinfo=UTC)


def window(label: str, embeddings: np.ndarray, *, scores: dict[str, np.ndarray] | None = None,
           categories: dict[str, list[str]] | None = None, prefix: str = "q") -> Window:
    return Window(label, embeddings, tuple(f"{prefix}{i}" for i in range(len(embeddings))),
                  scores or {}, categories or {}, START, END)


def full_windows(seed: int, *, query_shift: float = 0.0, score_shift: float = 0.0
                 ) -> tuple[Window, Window]:
    rng = np.random.default_rng(seed)
    ref_e, cur_e = rng.normal(size=(80, 12)), rng.normal(size=(60, 12))
    cur_e[:, 0] += query_shift
    ref = window("reference", ref_e, scores={"top1_fused": rng.normal(size=70),
                                             "faithfulness": rng.random(50)},
                 categories={"tenant": list(rng.choice(["a", "b"], 80)),
                             "search_type": ["hybrid"] * 80})
    cur = window("current", cur_e, scores={"top1_fused": rng.normal(score_shift, 1.0, size=55),
                                           "faithfulness": rng.random(40)},
                 categories={"tenant": list(rng.choice(["a", "b"], 60)),
                             "search_type": ["hybrid"] * 60}, prefix="c")
    return ref, cur


def test_insufficient_data_gives_no_verdict() -> None:
    rng = np.random.default_rng(0)
    report = detect(window("reference", rng.normal(size=(20, 8))),
                    window("current", rng.normal(size=(35, 8))), SETTINGS)
    assert report.status is DriftStatus.INSUFFICIENT_DATA
    assert report.tests == () and report.drift_detected is False and report.drift_magnitude is None
    assert report.minimum_sizes == {"reference": 40, "current": 30}
    assert report.reason is not None and "20" in report.reason and "40" in report.reason
    assert report.affected_queries == () and report.recommendations == ()
    data = report.to_dict()
    assert data["status"] == "insufficient_data" and data["tests"] == []
    empty = detect(window("reference", rng.normal(size=(50, 8))), window("current", np.zeros((0, 8))),
                   SETTINGS)
    assert empty.status is DriftStatus.INSUFFICIENT_DATA and "current has 0" in (empty.reason or "")


def fixed(name: str, p: float) -> TestResult:
    return TestResult(name, "query", 0.0, p, 0.2, 50, 50, {})


@pytest.mark.parametrize(("smallest", "expected"), [(0.05 / 3 * 0.99, True), (0.05 / 3 * 1.01, False)])
def test_verdict_is_holm_over_every_test(monkeypatch: pytest.MonkeyPatch, smallest: float,
                                         expected: bool) -> None:
    # Three tests (no scores, categories or corpus): Holm needs the smallest p <= alpha / 3.
    # A p-value of 0.0168 is below alpha = 0.05 unadjusted, yet must not flag.
    monkeypatch.setattr(detector, "mmd_test", lambda *a, **k: fixed("query.mmd", smallest))
    monkeypatch.setattr(detector, "pca_ks_test", lambda *a, **k: fixed("query.pca_ks", 0.6))
    monkeypatch.setattr(detector, "classifier_test", lambda *a, **k: fixed("query.classifier", 0.9))
    rng = np.random.default_rng(1)
    report = detect(window("reference", rng.normal(size=(50, 4))),
                    window("current", rng.normal(size=(40, 4))), SETTINGS)
    assert len(report.tests) == 3
    assert report.drift_detected is expected
    assert report.status is (DriftStatus.DRIFT if expected else DriftStatus.NO_DRIFT)
    assert report.tests[0].adjusted_p == pytest.approx(3 * smallest)
    assert [o.adjusted_p for o in report.tests[1:]] == pytest.approx([1.0, 1.0])  # max(0.6·2, 0.9·1)
    assert report.families_fired() == (("query",) if expected else ())
    assert bool(report.recommendations) is expected


def test_adjudicate_step_down() -> None:
    results = [fixed("a", 0.01), fixed("b", 0.02), fixed("c", 0.04)]
    # Holm: 0.03, 0.04, 0.04 -> all three rejected at 0.05 (Bonferroni would reject only one)
    assert [o.rejected for o in adjudicate(results, 0.05)] == [True, True, True]
    assert [o.rejected for o in adjudicate(results, 0.035)] == [True, False, False]


def test_permutations_are_raised_for_p_value_resolution() -> None:
    assert permutations_needed(3, 0.05, 500) == 500
    assert permutations_needed(13, 0.05, 500) == 520  # 1 / 521 <= 0.05 / (2 · 13)
    assert permutations_needed(10, 0.01, 500) == 2000
    ref, cur = full_windows(2)
    report = detect(ref, cur, SETTINGS.model_copy(update={"permutations": 50}))
    m = len(report.tests)
    assert report.permutations == permutations_needed(m, 0.05, 50) == 2 * m * 20
    assert 1 / (report.permutations + 1) <= 0.05 / m


def test_full_battery_runs_every_family_and_serialises() -> None:
    ref, cur = full_windows(3)
    rng = np.random.default_rng(3)
    report = detect(ref, cur, SETTINGS, corpus_reference=rng.normal(size=(60, 12)),
                    corpus_current=rng.normal(size=(50, 12)))
    names = [o.result.name for o in report.tests]
    assert names == ["query.mmd", "query.pca_ks", "query.classifier", "corpus.mmd",
                     "score.faithfulness.ks", "score.faithfulness.anderson_darling",
                     "score.top1_fused.ks", "score.top1_fused.anderson_darling",
                     "categorical.tenant.chi_square"]
    assert any("search_type" in note and "single label" in note for note in report.notes)
    assert set(report.displays) == {"faithfulness", "top1_fused"}
    for outcome in report.tests:
        assert 0 < outcome.result.p_value <= outcome.adjusted_p <= 1
        assert 0 <= outcome.result.effect_size <= 1
    assert report.drift_magnitude is not None and 0 <= report.drift_magnitude <= 1
    data = json.loads(json.dumps(report.to_dict()))
    assert data["current"]["start"] == START.isoformat() and data["reference"]["size"] == 80
    assert data["tests"][1]["detail"]["p_values"] and isinstance(data["tests"][1]["detail"]["p_values"], list)
    assert len(data["affected_queries"]) == 5


def test_same_seed_same_report_different_seed_different_permutations() -> None:
    ref, cur = full_windows(4, query_shift=0.3)
    first, second = detect(ref, cur, SETTINGS), detect(ref, cur, SETTINGS)
    assert first.to_dict() == second.to_dict()
    other = detect(ref, cur, SETTINGS.model_copy(update={"seed": 1}))
    assert [o.result.p_value for o in other.tests] != [o.result.p_value for o in first.tests]


def test_no_drift_on_same_distribution() -> None:
    ref, cur = full_windows(5)
    report = detect(ref, cur, SETTINGS)
    assert report.status is DriftStatus.NO_DRIFT and report.recommendations == ()


def test_query_drift_flags_and_names_the_shifted_queries() -> None:
    rng = np.random.default_rng(6)
    topic = np.eye(12)
    ref_e = rng.normal(size=(80, 12)) * 0.3 + topic[1]  # queries about one topic
    cur_e = rng.normal(size=(60, 12)) * 0.3 + topic[1]
    cur_e[:12] = rng.normal(size=(12, 12)) * 0.3 + topic[0]  # 12 queries about a new topic
    report = detect(window("reference", ref_e), window("current", cur_e, prefix="c"), SETTINGS)
    assert report.drift_detected and report.families_fired() == ("query",)
    assert "Query drift" in report.recommendations[0]
    assert {q.id for q in report.affected_queries} <= {f"c{i}" for i in range(12)}
    assert report.drift_magnitude is not None and report.drift_magnitude > 0.1


def test_score_drift_only() -> None:
    ref, cur = full_windows(7, score_shift=1.0)
    report = detect(ref, cur, SETTINGS)
    assert report.families_fired() == ("score",)
    assert any("top1_fused" in r for r in report.recommendations)
    fired = {o.result.name for o in report.tests if o.rejected}
    assert fired <= {"score.top1_fused.ks", "score.top1_fused.anderson_darling"} and fired


def test_affected_queries_by_mean_neighbour_distance() -> None:
    reference = np.array([[1.0, 0.0], [1.0, 0.1], [0.9, 0.0]])
    current = np.array([[1.0, 0.05], [0.0, 1.0], [0.7, 0.7]])
    found = affected_queries(reference, current, ["near", "far", "middle"], 2, neighbours=2)
    assert [q.id for q in found] == ["far", "middle"]
    assert found[0].distance > found[1].distance > 0


@pytest.mark.parametrize("bad", [
    {"scores": {"x": np.array([1.0, np.nan])}},
    {"categories": {"tenant": ["a"]}},
    {"ids": ("a",)},
])
def test_window_rejects_bad_input(bad: dict[str, Any]) -> None:
    values: dict[str, Any] = {"label": "w", "embeddings": np.zeros((3, 2)), "ids": ("a", "b", "c")}
    with pytest.raises(InputError):
        Window(**{**values, **bad})


def test_dimension_mismatch_is_an_input_error() -> None:
    rng = np.random.default_rng(8)
    with pytest.raises(InputError):
        detect(window("reference", rng.normal(size=(50, 8))), window("current", rng.normal(size=(40, 9))),
               SETTINGS)
