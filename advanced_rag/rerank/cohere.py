"""Reranking with the Cohere rerank API (``POST /v2/rerank``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..errors import ProviderError
from ..remote.cohere_sdk import CohereEndpoint, cohere_usage
from ..remote.identity import remote_identity
from ..remote.resilience import Resilience
from ..types import Hit, ModelIdentity

__all__ = ["CohereReranker"]


class CohereReranker:
    """Scores the hits with a Cohere rerank model and keeps the best ``top_k``.

    Same contract as :class:`~advanced_rag.rerank.CrossEncoderReranker`: the returned hits are
    the input hits (text, metadata, first-stage scores untouched) with ``scores.rerank`` set to
    Cohere's ``relevance_score``, best first, ties in first-stage order. The call goes through
    the shared :class:`~advanced_rag.remote.resilience.Resilience` policy; a response that
    names an index outside the input, repeats one, or returns fewer results than asked is
    ``malformed``. ``max_tokens_per_doc`` caps what Cohere reads of each passage (and bills).

    Example::

        reranker = CohereReranker("rerank-v3.5", resilience=Resilience())   # key: $CO_API_KEY
        best = await reranker.rerank("what is KYC?", hits, top_k=5)
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key_env: str = "CO_API_KEY",
                 timeout_s: float = 10.0, max_tokens_per_doc: int | None = None,
                 resilience: Resilience | None = None) -> None:
        self._endpoint = CohereEndpoint(model, base_url=base_url, api_key_env=api_key_env,
                                        timeout_s=timeout_s, setting="reranker")
        self._max_tokens = max_tokens_per_doc
        self._resilience = resilience or Resilience()
        self._identity = remote_identity("cohere", self._endpoint.endpoint, model)

    @property
    def name(self) -> str:
        return f"cohere:{self._endpoint.model}"

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    @property
    def endpoint(self) -> CohereEndpoint:
        return self._endpoint

    def __repr__(self) -> str:
        return f"CohereReranker({self._endpoint!r})"

    async def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        if not hits or top_k < 1:
            return []
        endpoint = self._endpoint
        top_n = min(top_k, len(hits))
        extra: dict[str, Any] = {}
        if self._max_tokens is not None:
            extra["max_tokens_per_doc"] = self._max_tokens

        async def attempt() -> tuple[list[tuple[int, float]], Any]:
            try:
                response = await endpoint.client.rerank(
                    model=endpoint.model, query=query, documents=[h.text for h in hits],
                    top_n=top_n, **extra)
            except endpoint.sdk_errors as exc:
                raise endpoint.error(exc, "rerank") from exc
            return _ranking(response, len(hits), top_n, endpoint.endpoint), response

        ranking, _ = await self._resilience.call(
            endpoint.target, "rerank", attempt, usage=lambda result: cohere_usage(result[1]))
        rescored = [dataclasses.replace(hits[i], scores=dataclasses.replace(hits[i].scores,
                                                                            rerank=score))
                    for i, score in ranking]
        order = {h.chunk_id: n for n, h in enumerate(hits)}
        rescored.sort(key=lambda h: (-(h.scores.rerank or 0.0), order[h.chunk_id]))
        return rescored

    async def probe(self) -> str:
        return await self._endpoint.probe()

    async def aclose(self) -> None:
        await self._endpoint.aclose()


def _ranking(response: Any, count: int, top_n: int, where: str) -> list[tuple[int, float]]:
    """``(input index, relevance score)`` pairs from a rerank response, validated."""
    results = getattr(response, "results", None)
    if not isinstance(results, list) or len(results) != top_n:
        got = len(results) if isinstance(results, list) else "no"
        raise ProviderError(f"malformed rerank response from {where}: {got} results for "
                            f"top_n={top_n}", provider="cohere", kind="malformed")
    out: list[tuple[int, float]] = []
    seen: set[int] = set()
    for item in results:
        index = getattr(item, "index", None)
        score = getattr(item, "relevance_score", None)
        if (not isinstance(index, int) or not 0 <= index < count or index in seen
                or not isinstance(score, int | float) or score != score):
            raise ProviderError(f"malformed rerank response from {where}: result "
                                f"{index!r} / {score!r}", provider="cohere", kind="malformed")
        seen.add(index)
        out.append((index, float(score)))
    return out
