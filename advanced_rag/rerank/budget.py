"""How many candidates to rerank so a retrieval stays within ``pipeline.target_latency_ms``.

A cross-encoder on CPU is arithmetic-bound: its cost grows with the passages it reads. With
``reranker.budget: adaptive`` the pipeline estimates the cost per passage from the reranks
it has done (an exponentially weighted mean, :class:`RerankCost`) and, per request, reranks
the first-stage top ``n`` that fit in what is left of the target after embedding and search
(minus ``reranker.reserve_ms`` for the risk and audit stages), never fewer than
``reranker.min_candidates`` and never more than it has. The rest keep their first-stage
order behind the reranked ones. The decision (:class:`RerankPlan`) is in the retrieval's
metrics and its ``rerank`` audit event, so an auditor can see why a request reranked 7 of 20.

``fixed`` reranks every candidate, as before; so does a hosted reranker (Cohere), whose cost
is mostly the round trip. Until a cost is known (the first rerank), adaptive reranks
everything too, and measures.

Example::

    plan = plan_rerank(20, elapsed_ms=45.0, target_ms=80.0, per_passage_ms=3.1, minimum=5,
                       reserve_ms=5.0)
    plan.reranked   # 9: (80 - 45 - 5) / 3.1
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["RerankCost", "RerankPlan", "plan_rerank"]


@dataclass(frozen=True, slots=True)
class RerankPlan:
    """What one request reranked, and why."""

    candidates: int
    reranked: int
    budget_ms: float | None  # None: no budget applied (fixed, or the cost is not known yet)
    per_passage_ms: float | None
    reason: str

    def to_payload(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("budget_ms", "per_passage_ms"):
            if out[key] is not None:
                out[key] = round(out[key], 3)
        return out


def plan_rerank(candidates: int, *, elapsed_ms: float, target_ms: float,
                per_passage_ms: float | None, minimum: int, reserve_ms: float) -> RerankPlan:
    """The number of first-stage candidates to rerank (pure)."""
    if candidates <= 0:
        return RerankPlan(0, 0, None, per_passage_ms, "no candidates")
    if per_passage_ms is None or per_passage_ms <= 0:
        return RerankPlan(candidates, candidates, None, per_passage_ms,
                          "cost unknown yet: reranking all and measuring")
    budget = target_ms - elapsed_ms - reserve_ms
    fits = math.floor(budget / per_passage_ms) if budget > 0 else 0
    floor = min(minimum, candidates)
    n = max(floor, min(candidates, fits))
    if n == candidates:
        reason = "all candidates fit the latency budget"
    elif n == floor and fits < floor:
        reason = "budget exhausted: reranking the configured minimum"
    else:
        reason = "reranking the first-stage top that fits the latency budget"
    return RerankPlan(candidates, n, budget, per_passage_ms, reason)


class RerankCost:
    """An exponentially weighted mean of the measured cost per reranked passage."""

    def __init__(self, weight: float = 0.2) -> None:
        self._weight = weight
        self.per_passage_ms: float | None = None

    def observe(self, passages: int, elapsed_ms: float) -> None:
        if passages <= 0 or not math.isfinite(elapsed_ms) or elapsed_ms < 0:
            return
        sample = elapsed_ms / passages
        current = self.per_passage_ms
        self.per_passage_ms = sample if current is None else (
            (1 - self._weight) * current + self._weight * sample)
