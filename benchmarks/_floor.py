"""The raw-pymilvus floor on the pipeline's own collection: the same model's bare ``encode``
and the same search requests (ranker, filter, output fields) through a plain MilvusClient.
Shared by latency.py and scale.py."""

from __future__ import annotations

import time
from typing import Any

from advanced_rag.config import PipelineConfig
from advanced_rag.store.filters import compile_filter
from advanced_rag.store.milvus import _OUTPUT_FIELDS


class Floor:
    """Timed calls against ``cfg.milvus``'s collection, scoped to ``tenant`` like the pipeline."""

    def __init__(self, cfg: PipelineConfig, model: Any, tenant: str) -> None:
        from pymilvus import MilvusClient, RRFRanker, WeightedRanker

        settings = cfg.pipeline
        self._client = MilvusClient(cfg.milvus.uri)
        self._collection = cfg.milvus.collection
        self._model = model
        self._expr = compile_filter(tenant)
        self._limit, self._candidates = settings.top_k, settings.candidate_limit
        self._ranker = (WeightedRanker(settings.hybrid_alpha, 1 - settings.hybrid_alpha)
                        if settings.fusion == "weighted" else RRFRanker(settings.rrf_k))
        self._dense = {"metric_type": cfg.milvus.index.metric,
                       "params": {"ef": max(cfg.milvus.index.ef, settings.candidate_limit)}}
        self._bm25 = {"metric_type": "BM25", "params": {}}

    def encode(self, query: str) -> Any:
        return self._model.encode([query], normalize_embeddings=True, convert_to_numpy=True)[0]

    def hybrid(self, query: str) -> tuple[float, float]:
        """``encode`` + ``hybrid_search``: (encode ms, total ms)."""
        from pymilvus import AnnSearchRequest

        began = time.perf_counter()
        vector = self.encode(query)
        embedded = time.perf_counter()
        reqs = [AnnSearchRequest(data=[vector.tolist()], anns_field="dense", param=self._dense,
                                 limit=self._candidates, expr=self._expr),
                AnnSearchRequest(data=[query], anns_field="sparse_bm25", param=self._bm25,
                                 limit=self._candidates, expr=self._expr)]
        self._client.hybrid_search(self._collection, reqs, self._ranker, limit=self._limit,
                                   output_fields=_OUTPUT_FIELDS, consistency_level="Strong")
        done = time.perf_counter()
        return (embedded - began) * 1e3, (done - began) * 1e3

    def dense(self, vector: Any) -> float:
        """One dense ANN search alone (ms)."""
        began = time.perf_counter()
        self._client.search(self._collection, data=[vector.tolist()], anns_field="dense",
                            filter=self._expr, limit=self._candidates, search_params=self._dense,
                            output_fields=["chunk_id"], consistency_level="Strong")
        return (time.perf_counter() - began) * 1e3

    def bm25(self, query: str) -> float:
        """One BM25 search alone (ms)."""
        began = time.perf_counter()
        self._client.search(self._collection, data=[query], anns_field="sparse_bm25",
                            filter=self._expr, limit=self._candidates, search_params=self._bm25,
                            output_fields=["chunk_id"], consistency_level="Strong")
        return (time.perf_counter() - began) * 1e3

    def close(self) -> None:
        self._client.close()
