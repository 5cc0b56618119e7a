"""Deterministic sampling of chunk embeddings at ingest (pure).

A bottom-k sample by SHA-256 of the chunk id: the same chunks are picked whatever the batch
order, and a re-ingest of unchanged documents picks nothing new (they write no chunks).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Sequence

import numpy as np

__all__ = ["BottomKSample"]


class BottomKSample:
    """Keeps the ``limit`` offered items whose chunk-id hashes are smallest."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._heap: list[tuple[int, str, str, np.ndarray]] = []  # (-hash, chunk, doc, vector)

    def offer(self, chunk_ids: Sequence[str], doc_ids: Sequence[str], vectors: np.ndarray) -> None:
        for chunk_id, doc_id, vector in zip(chunk_ids, doc_ids, vectors, strict=True):
            key = -int.from_bytes(hashlib.sha256(chunk_id.encode()).digest()[:8], "big")
            item = (key, chunk_id, doc_id, np.asarray(vector))
            if len(self._heap) < self.limit:
                heapq.heappush(self._heap, item)
            elif self.limit and key > self._heap[0][0]:
                heapq.heapreplace(self._heap, item)

    def items(self) -> list[tuple[str, str, np.ndarray]]:
        """``(chunk_id, doc_id, vector)`` in chunk-id hash order."""
        return [(c, d, v) for _, c, d, v in sorted(self._heap, reverse=True)]
