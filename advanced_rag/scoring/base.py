"""The scoring seam: claims in, per-claim verdicts with evidence out, plus an answer-level risk.

A :class:`Judge` sees the claims of one answer (see :mod:`advanced_rag.scoring.claims`) and the
context passages the answer should rest on. For each claim it returns the probability that
the contexts support it, a verdict, and the evidence (which context, which sentence span) it
found best; for the answer it returns the calibrated probability that at least one claim is
unsupported or contradicted. Every probability is a float in [0, 1] or ``None`` — never NaN.

Example::

    result = await judge.judge(split_claims(answer), contexts)
    [c.verdict for c in result.claims], result.hallucination_risk
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

__all__ = ["Claim", "ClaimJudgement", "Evidence", "Judge", "JudgeResult", "Verdict"]


@dataclass(frozen=True, slots=True)
class Claim:
    """One atomic statement of an answer. ``answer[start:end]`` is its span in the original
    answer (citation markers included); ``text`` is that span with markers like ``[1]``
    removed and whitespace normalised; ``citations`` are the marker numbers, in order."""

    index: int
    text: str
    start: int
    end: int
    citations: tuple[int, ...] = ()


class Verdict(StrEnum):
    SUPPORTED = "supported"
    CONTRADICTED = "contradicted"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True)
class Evidence:
    """The context sentence a judge found closest to a claim: ``contexts[context_index]
    [start:end] == text``."""

    context_index: int
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class ClaimJudgement:
    """A judge's view of one claim. ``support`` is the calibrated probability that the
    contexts support it; ``signals`` are the named inputs the judge used (for explanation)."""

    claim: Claim
    support: float
    verdict: Verdict
    evidence: Evidence | None
    signals: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JudgeResult:
    """All claims of one answer, and the calibrated probability that at least one of them is
    unsupported or contradicted (``None`` when there was nothing to judge). ``judged_by`` is
    ``(name, version)`` of the judge that actually served, when a fallback chain stood in
    for the configured one."""

    claims: tuple[ClaimJudgement, ...]
    hallucination_risk: float | None
    judged_by: tuple[str, str] | None = None


@runtime_checkable
class Judge(Protocol):
    """Judges claims against contexts. Deterministic for the same inputs and version."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    async def judge(self, claims: Sequence[Claim], contexts: Sequence[str]) -> JudgeResult: ...
