"""The reranker that keeps the retrieval order (the offline default)."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Hit


class NoReranker:
    """Keeps the first-stage order and cuts to ``top_k``; sets no rerank score."""

    @property
    def name(self) -> str:
        return "none"

    async def rerank(self, query: str, hits: Sequence[Hit], top_k: int) -> list[Hit]:
        return list(hits[:top_k])
