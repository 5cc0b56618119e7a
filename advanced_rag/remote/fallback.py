"""Fallback chains: when a component fails for good, the next one in the chain serves.

Configured per role (``reranker.fallback``, ``generator.fallback``, ``judge.fallback``), e.g.
Cohere rerank → local cross-encoder → no reranking, or OpenAI judge → the offline
FeatureJudge. A member "fails for good" when it raises a
:class:`~advanced_rag.errors.BackendError` — for a remote member that is after the
resilience policy's retries, or at once when its circuit breaker is open. Input errors are
the caller's and are never answered by a fallback. Every fallback taken is recorded in the
request's call log (and so in its audit event) with the failed member, the one used and the
error class and kind; the last member's error propagates when every member fails.

There is no fallback for embedders: vectors of another model cannot be searched against the
stored ones.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ..errors import BackendError, ProviderError
from ..generate.base import Generation, Generator
from ..protocols import Reranker, close_component
from ..scoring.base import Claim, Judge, JudgeResult
from ..types import Hit
from .calls import FallbackTaken, report_fallback

__all__ = ["FallbackGenerator", "FallbackJudge", "FallbackReranker", "first_success"]

T = TypeVar("T")
M = TypeVar("M")
log = logging.getLogger(__name__)


def _error_label(error: BaseException) -> str:
    kind = f"/{error.kind}" if isinstance(error, ProviderError) else ""
    return f"{type(error).__name__}{kind}"


async def first_success(role: str, members: Sequence[M], name: Callable[[M], str],
                        run: Callable[[M], Awaitable[T]]) -> tuple[T, M]:
    """``run`` the members in order until one succeeds; return its result and the member."""
    if not members:
        raise ValueError(f"an empty {role} fallback chain")
    for position, member in enumerate(members):
        try:
            return await run(member), member
        except BackendError as exc:
            if position == len(members) - 1:
                raise
            following = members[position + 1]
            log.warning("%s %s failed (%s); falling back to %s", role, name(member),
                        _error_label(exc), name(following))
            report_fallback(FallbackTaken(role, name(member), name(following), _error_label(exc)))
    raise AssertionError("unreachable")  # pragma: no cover


class _Chain:
    """Closing, probing and naming shared by the chains."""

    def __init__(self, members: Sequence[object]) -> None:
        if len(members) < 2:
            raise ValueError("a fallback chain needs at least two members")
        self._members = tuple(members)

    @property
    def members(self) -> tuple[object, ...]:
        return self._members

    async def aclose(self) -> None:
        for member in self._members:
            await close_component(member)


class FallbackReranker(_Chain):
    """A :class:`~advanced_rag.protocols.Reranker` that tries its members in order."""

    def __init__(self, members: Sequence[Reranker]) -> None:
        super().__init__(members)
        self._rerankers = tuple(members)

    @property
    def name(self) -> str:
        return self._rerankers[0].name

    async def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        result, _ = await first_success("reranker", self._rerankers, lambda r: r.name,
                                        lambda r: r.rerank(query, hits, top_k))
        return result


class FallbackGenerator(_Chain):
    """A :class:`~advanced_rag.generate.base.Generator` that tries its members in order;
    :attr:`Generation.model` names the model that actually answered."""

    def __init__(self, members: Sequence[Generator]) -> None:
        super().__init__(members)
        self._generators = tuple(members)

    @property
    def name(self) -> str:
        return self._generators[0].name

    async def generate(self, question: str, hits: Sequence[Hit]) -> Generation:
        result, _ = await first_success("generator", self._generators, lambda g: g.name,
                                        lambda g: g.generate(question, hits))
        return result


class FallbackJudge(_Chain):
    """A :class:`~advanced_rag.scoring.base.Judge` that tries its members in order; a result
    from a fallback carries ``judged_by`` so the scores name the judge that produced them."""

    def __init__(self, members: Sequence[Judge]) -> None:
        super().__init__(members)
        self._judges = tuple(members)

    @property
    def name(self) -> str:
        return self._judges[0].name

    @property
    def version(self) -> str:
        return self._judges[0].version

    async def judge(self, claims: Sequence[Claim], contexts: Sequence[str]) -> JudgeResult:
        result, used = await first_success("judge", self._judges, lambda j: j.name,
                                           lambda j: j.judge(claims, contexts))
        if used is self._judges[0]:
            return result
        return dataclasses.replace(result, judged_by=(used.name, used.version))
