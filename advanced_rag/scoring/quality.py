"""From a judge's claim verdicts to the numbers a user reads: :class:`QualityScores`.

``faithfulness_score`` is the support-weighted share of supported claims: the mean over
claims of the judge's calibrated support probability, i.e. the expected fraction of claims
the contexts support. ``hallucination_risk`` is the judge's calibrated probability that the
answer holds at least one unsupported or contradicted claim. Nothing to score (an empty
answer, no contexts) gives ``None`` for both and a ``reason`` — never NaN.

Example::

    scorer = AnswerScorer(FeatureJudge(embedder))
    quality = await scorer.score("Who approves loans?", answer, [hit.text for hit in hits])
    quality.faithfulness_score, quality.hallucination_risk, quality.unsupported_claims
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..types import _ItemAccess
from .base import ClaimJudgement, Judge, JudgeResult, Verdict
from .claims import split_claims

__all__ = ["AnswerScorer", "QualityScores", "aggregate", "unscored"]


@dataclass(frozen=True, slots=True)
class QualityScores(_ItemAccess):
    """How well an answer rests on its contexts, claim by claim, and who judged it."""

    faithfulness_score: float | None
    hallucination_risk: float | None
    claims: tuple[ClaimJudgement, ...]
    judge: str
    judge_version: str
    reason: str | None = None

    @property
    def unsupported_claims(self) -> tuple[ClaimJudgement, ...]:
        """Claims judged unsupported or contradicted, with their spans and the evidence tried."""
        return tuple(c for c in self.claims if c.verdict is not Verdict.SUPPORTED)


def _probability(value: float | None, what: str) -> float | None:
    if value is None:
        return None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"judge returned {what} {value!r}: a probability must be in [0, 1]")
    return float(value)


def aggregate(result: JudgeResult, *, judge: str, version: str) -> QualityScores:
    """QualityScores of one judged answer (pure)."""
    if not result.claims:
        return unscored("no claims to judge", judge=judge, version=version)
    supports = [_probability(c.support, "support") for c in result.claims]
    mean = sum(s for s in supports if s is not None) / len(supports)
    return QualityScores(faithfulness_score=mean,
                         hallucination_risk=_probability(result.hallucination_risk, "risk"),
                         claims=tuple(result.claims), judge=judge, judge_version=version)


def unscored(reason: str, *, judge: str, version: str) -> QualityScores:
    """The scores of something that could not be judged: ``None``, with the reason."""
    return QualityScores(None, None, (), judge, version, reason)


class AnswerScorer:
    """Splits an answer into claims and has ``judge`` check them against the contexts."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge

    async def score(self, question: str, answer: str, contexts: Sequence[str]) -> QualityScores:
        """Score ``answer`` (from this pipeline or the user's own LLM) against ``contexts``.

        ``question`` is recorded by callers for audit; the judge checks claims against the
        contexts only, so an answer that is faithful but off-topic still scores as faithful.
        """
        name, version = self.judge.name, self.judge.version
        if not isinstance(answer, str) or not answer.strip():
            return unscored("empty answer", judge=name, version=version)
        texts = [c for c in contexts if isinstance(c, str) and c.strip()]
        if not texts:
            return unscored("no contexts to check the answer against", judge=name,
                            version=version)
        claims = split_claims(answer)
        if not claims:
            return unscored("no claims found in the answer", judge=name, version=version)
        result = await self.judge.judge(claims, texts)
        if result.judged_by is not None:  # a fallback judge served this answer
            name, version = result.judged_by
        return aggregate(result, judge=name, version=version)
