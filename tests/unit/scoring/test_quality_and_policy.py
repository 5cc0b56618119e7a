"""Aggregation of judge verdicts and the answer risk policy (pure functions)."""

from __future__ import annotations

import math

import pytest

from advanced_rag.answering import Decision, decide
from advanced_rag.scoring.base import Claim, ClaimJudgement, Evidence, JudgeResult, Verdict
from advanced_rag.scoring.quality import QualityScores, aggregate, unscored


def judged(support: float, verdict: Verdict, i: int = 0) -> ClaimJudgement:
    return ClaimJudgement(
        Claim(i, f"claim {i}", i * 10, i * 10 + 7), support, verdict, Evidence(0, 0, 4, "ctx.")
    )


def test_faithfulness_is_the_mean_support_and_unsupported_claims_are_listed() -> None:
    result = JudgeResult(
        (
            judged(0.9, Verdict.SUPPORTED, 0),
            judged(0.2, Verdict.UNSUPPORTED, 1),
            judged(0.1, Verdict.CONTRADICTED, 2),
        ),
        0.95,
    )
    quality = aggregate(result, judge="j", version="1")
    assert quality.faithfulness_score == pytest.approx((0.9 + 0.2 + 0.1) / 3)
    assert quality.hallucination_risk == 0.95
    assert [c.claim.index for c in quality.unsupported_claims] == [1, 2]
    assert quality["judge_version"] == "1"


def test_nothing_to_score_is_none_never_nan() -> None:
    for quality in (
        aggregate(JudgeResult((), None), judge="j", version="1"),
        unscored("empty answer", judge="j", version="1"),
    ):
        assert quality.faithfulness_score is None and quality.hallucination_risk is None
        assert quality.reason and quality.claims == ()


def test_a_judge_returning_nan_or_out_of_range_is_refused() -> None:
    for bad in (math.nan, 1.5, -0.1):
        with pytest.raises(ValueError, match="probability"):
            aggregate(JudgeResult((judged(bad, Verdict.SUPPORTED),), 0.1), judge="j", version="1")


@pytest.mark.parametrize(
    ("risk", "refused", "policy", "expected"),
    [
        (0.2, False, "flag", Decision.RETURNED),
        (0.5, False, "withhold", Decision.RETURNED),  # at the limit is allowed
        (0.51, False, "flag", Decision.FLAGGED),
        (0.51, False, "withhold", Decision.WITHHELD),
        (None, False, "flag", Decision.FLAGGED),  # unknown risk counts as too high
        (None, True, "withhold", Decision.REFUSED),
    ],
)
def test_risk_policy(risk: float | None, refused: bool, policy: str, expected: Decision) -> None:
    quality = QualityScores(None if risk is None else 0.5, risk, (), "j", "1")
    assert decide(quality, refused=refused, max_risk=0.5, on_high_risk=policy) is expected
