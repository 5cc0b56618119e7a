"""The pipeline's side of drift monitoring: what it logs on each retrieval, answer and ingest.

The pipeline owns one :class:`DriftRecorder` (when ``drift.query_log`` is on or
``drift.corpus_sample`` > 0) and calls it after the audit event of the call committed; the
rows go through :class:`~.store.QueryLogWriter`, off the request path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .monitor import DriftMonitor
from .sampling import BottomKSample
from .store import AnswerScores, DriftStore, QueryLogEntry, QueryLogWriter

if TYPE_CHECKING:
    from ..config import PipelineConfig
    from ..protocols import SearchRequest, StoredChunk
    from ..types import Hit

__all__ = ["DriftRecorder", "top_scores"]


def top_scores(hits: Sequence[Hit]) -> dict[str, float | None]:
    """The highest score of each signal among ``hits`` (``None`` where no hit has it)."""
    out: dict[str, float | None] = {}
    for signal in ("dense", "bm25", "fused", "rerank"):
        values = [v for h in hits if (v := getattr(h.scores, signal)) is not None]
        out[f"top_{signal}"] = max(values) if values else None
    return out


class DriftRecorder:
    """Logs retrievals (query embedding, top scores, risk), answer scores, and ingest samples."""

    def __init__(self, store: DriftStore, config: PipelineConfig) -> None:
        self.store = store
        self.settings = config.drift
        self._log = QueryLogWriter(store) if config.drift.query_log else None
        self.monitor = DriftMonitor(store, config.drift)

    @classmethod
    async def open(cls, config: PipelineConfig) -> DriftRecorder:
        recorder = cls(await DriftStore.from_config(config).open(), config)
        if recorder._log is not None:
            recorder._log.start()
        return recorder

    async def close(self) -> None:
        if self._log is not None:
            await self._log.close()
        await self.store.close()

    async def flush(self) -> None:
        """Write what is buffered now (tests, reports that must see the latest rows)."""
        if self._log is not None:
            await self._log.flush()

    def log_retrieval(self, event_id: str, tenant: str, request: SearchRequest,
                      hits: Sequence[Hit], risk: float | None) -> None:
        if self._log is None:
            return
        self._log.add(QueryLogEntry(
            event_id=event_id, created_at=datetime.now(UTC), tenant=tenant,
            search_type=str(request.search_type), embedding=request.query_vector,
            hits=len(hits), retrieval_risk=risk, **top_scores(hits)))

    def log_answer(self, retrieval_event_id: str, faithfulness: float | None,
                   risk: float | None) -> None:
        if self._log is not None:
            self._log.add(AnswerScores(retrieval_event_id, faithfulness, risk))

    def sampler(self) -> BottomKSample | None:
        """A fresh per-ingest corpus sample, or ``None`` when sampling is off."""
        return BottomKSample(self.settings.corpus_sample) if self.settings.corpus_sample else None

    @staticmethod
    def offer(sample: BottomKSample, rows: Sequence[StoredChunk]) -> None:
        import numpy as np

        if rows:
            sample.offer([r.chunk.chunk_id for r in rows], [r.chunk.doc_id for r in rows],
                         np.stack([r.vector for r in rows]))

    async def save_sample(self, sample: BottomKSample, tenant: str) -> None:
        await self.store.add_corpus_sample(
            [(tenant, c, d, v) for c, d, v in sample.items()], datetime.now(UTC))
