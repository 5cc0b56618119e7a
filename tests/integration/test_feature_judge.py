"""FeatureJudge with the real packaged MiniLM and the packaged model file."""

from __future__ import annotations

import pytest

from advanced_rag.scoring.base import Claim, Judge, Verdict
from advanced_rag.scoring.feature_judge import FeatureJudge

pytestmark = pytest.mark.integration

CONTEXTS = [
    "The Basel Committee published the revised framework in December 2017. Banks must hold a "
    "minimum Common Equity Tier 1 ratio of 4.5 percent of risk-weighted assets.",
    "Customer due diligence applies before an account is opened. The bank verifies the identity "
    "of every new customer using official documents.",
]


async def test_copied_sentence_supported_fabricated_number_not(embedder) -> None:  # type: ignore[no-untyped-def]
    judge = FeatureJudge(embedder)
    assert isinstance(judge, Judge)
    copied = "Banks must hold a minimum Common Equity Tier 1 ratio of 4.5 percent of risk-weighted assets."
    claims = [Claim(0, copied, 0, 90), Claim(1, copied.replace("4.5", "7.5"), 91, 180)]
    result = await judge.judge(claims, CONTEXTS)
    good, fabricated = result.claims
    assert good.support > 0.5 and good.verdict == Verdict.SUPPORTED
    assert fabricated.support < good.support and fabricated.verdict != Verdict.SUPPORTED
    assert fabricated.evidence is not None and fabricated.evidence.context_index == 0
    assert "4.5 percent" in fabricated.evidence.text
    assert result.hallucination_risk is not None and 0.0 <= result.hallucination_risk <= 1.0
    again = await FeatureJudge(embedder).judge(claims, CONTEXTS)
    assert again == result
