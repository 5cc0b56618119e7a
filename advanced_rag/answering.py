"""What :meth:`AdvancedRAGPipeline.answer` returns, and the risk policy it applies (pure).

An answer is generated from the retrieved hits, scored claim by claim against them, and then
returned, flagged or withheld by ``pipeline.max_hallucination_risk`` / ``on_high_risk``:

* ``returned``  — risk known and at most the limit;
* ``flagged``   — risk above the limit (or unknown), ``on_high_risk: flag``: the text is
  returned and ``answer.flagged`` is true, so the caller can show a warning;
* ``withheld``  — risk above the limit (or unknown), ``on_high_risk: withhold``: ``text`` is
  ``None``; the scores and the unsupported claims are still returned (and audited);
* ``refused``   — the generator itself found no support and said so.

Example::

    answer = await rag.answer("Who approves loans above 250,000 euros?", tenant="bank-a")
    if answer.withheld: ...
    print(answer.text, answer.quality.hallucination_risk, answer.decision)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from .generate.base import Citation
from .scoring.quality import QualityScores
from .types import Hit, _ItemAccess

__all__ = ["Answer", "Decision", "decide"]


class Decision(StrEnum):
    RETURNED = "returned"
    FLAGGED = "flagged"
    WITHHELD = "withheld"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Answer(_ItemAccess):
    """A generated answer with its citations, the hits it came from, its quality scores, what
    the risk policy decided, and the latency of each stage (ms)."""

    text: str | None
    citations: tuple[Citation, ...]
    hits: tuple[Hit, ...]
    quality: QualityScores
    decision: Decision
    latency_ms: Mapping[str, float]
    request_id: str

    @property
    def flagged(self) -> bool:
        return self.decision is Decision.FLAGGED

    @property
    def withheld(self) -> bool:
        return self.decision is Decision.WITHHELD


def decide(quality: QualityScores, *, refused: bool, max_risk: float,
           on_high_risk: str) -> Decision:
    """The policy: refusals pass through; an unknown risk counts as too high."""
    if refused:
        return Decision.REFUSED
    risk = quality.hallucination_risk
    if risk is not None and risk <= max_risk:
        return Decision.RETURNED
    return Decision.WITHHELD if on_high_risk == "withhold" else Decision.FLAGGED
