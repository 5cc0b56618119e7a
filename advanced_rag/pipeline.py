"""The async pipeline: ingest, retrieve (hybrid / dense / keyword), rerank, telemetry.

Example::

    from advanced_rag import AdvancedRAGPipeline, Document, load_config

    async with AdvancedRAGPipeline.from_config(load_config("config.yaml")) as rag:
        await rag.ingest([Document(id="kyc-1", text="...")], tenant="bank-a")
        hits, metrics = await rag.retrieve("When is enhanced due diligence required?",
                                           tenant="bank-a")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType

from pydantic import ValidationError

from .config import PipelineConfig
from .errors import AdvancedRagError, ConfigError, InputError
from .ingestion import Ingestor, ProgressCallback
from .protocols import Embedder, Reranker, SearchRequest, VectorStore
from .rerank import NoReranker
from .store.filters import check_tenant, compile_filter
from .telemetry import LatencyRecorder, PerformanceReport, StageTimer
from .types import (
    Document,
    IngestReport,
    MetadataFilter,
    RetrievalMetrics,
    RetrievalResult,
    SearchType,
)

MAX_QUERY_CHARS = 8_192


class AdvancedRAGPipeline:
    """Tenant-isolated retrieval over Milvus, with per-stage latency accounting.

    Build it with :meth:`from_config` (or pass your own components for tests and custom
    backends) and use it as an async context manager so connections and worker threads
    are released.
    """

    def __init__(self, config: PipelineConfig | None = None, *, embedder: Embedder | None = None,
                 store: VectorStore | None = None, reranker: Reranker | None = None) -> None:
        self.config = config or PipelineConfig()
        self._embedder = embedder
        self._store = store
        self._reranker = reranker
        self._opened = False
        self._owns_backends = True
        self._built: list[object] = []
        self._latency = LatencyRecorder(self.config.pipeline.target_latency_ms)

    @classmethod
    def from_config(cls, config: PipelineConfig | None = None) -> AdvancedRAGPipeline:
        """A pipeline whose backends are chosen by ``config`` when it opens."""
        return cls(config)

    def with_settings(self, **pipeline_settings: object) -> AdvancedRAGPipeline:
        """A sibling sharing this pipeline's open backends, with other ``pipeline:`` settings.

        Used to compare fusion settings on one index without reloading models::

            rrf = rag.with_settings(fusion="rrf", rrf_k=20)
        """
        current = self.config.pipeline
        try:
            settings = type(current).model_validate({**current.model_dump(), **pipeline_settings})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(first["msg"],
                              key=".".join(map(str, ("pipeline", *first["loc"])))) from None
        sibling = AdvancedRAGPipeline(self.config.model_copy(update={"pipeline": settings}),
                                      embedder=self._embedder, store=self._store,
                                      reranker=self._reranker)
        sibling._opened = self._opened
        sibling._owns_backends = False
        return sibling

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> AdvancedRAGPipeline:
        """Load models, connect to Milvus, create and load the collection. Idempotent."""
        if self._opened:
            return self
        from . import factory

        if self._embedder is None:
            self._embedder = await factory.build_embedder(self.config.embedder)
            self._built.append(self._embedder)
        if self._reranker is None:
            self._reranker = await factory.build_reranker(self.config.reranker,
                                                          device=self.config.embedder.device)
            self._built.append(self._reranker)
        if self._store is None:
            self._store = factory.build_store(self.config, dimension=self._embedder.dimension)
        await self._store.open()
        self._opened = True
        return self

    async def close(self) -> None:
        if not self._owns_backends:
            self._opened = False
            return
        if self._store is not None and self._opened:
            await self._store.close()
        for component in self._built:  # components passed in belong to the caller
            closer = getattr(component, "close", None)
            if callable(closer):
                closer()
        self._built.clear()
        self._opened = False

    async def __aenter__(self) -> AdvancedRAGPipeline:
        return await self.open()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    def _parts(self) -> tuple[Embedder, VectorStore, Reranker]:
        if not self._opened or self._embedder is None or self._store is None:
            raise AdvancedRagError("the pipeline is not open: use 'async with' or await open()")
        return self._embedder, self._store, self._reranker or NoReranker()

    def _tenant(self, tenant: str | None) -> str:
        return check_tenant(tenant if tenant is not None else self.config.pipeline.default_tenant)

    @property
    def embedder(self) -> Embedder:
        return self._parts()[0]

    @property
    def store(self) -> VectorStore:
        return self._parts()[1]

    # -- ingest ---------------------------------------------------------------------------

    async def ingest(self, documents: Iterable[Document], *, tenant: str | None = None,
                     actor: str = "system", progress: ProgressCallback | None = None
                     ) -> IngestReport:
        """Ingest documents for one tenant; unchanged documents are skipped, changed ones
        replace their previous version. Bad documents are listed in ``report.failed``.
        """
        embedder, store, _ = self._parts()
        ingestor = Ingestor(store, embedder, self.config.chunking, self.config.ingest)
        return await ingestor.ingest(documents, tenant=self._tenant(tenant), progress=progress)

    async def delete_documents(self, doc_ids: Sequence[str], *, tenant: str | None = None,
                               actor: str = "system") -> int:
        """Delete every chunk of the given documents of one tenant; returns chunks deleted."""
        _, store, _ = self._parts()
        return await store.delete_documents(self._tenant(tenant), list(doc_ids))

    # -- retrieve -------------------------------------------------------------------------

    async def retrieve(self, query: str, *, tenant: str | None = None, top_k: int | None = None,
                       filters: MetadataFilter | None = None,
                       search_type: SearchType | str | None = None,
                       actor: str = "system") -> RetrievalResult:
        """Search one tenant's chunks; rerank when a reranker is configured.

        Returns a :class:`RetrievalResult`, which also unpacks as ``hits, metrics``.
        """
        embedder, store, reranker = self._parts()
        settings = self.config.pipeline
        if not isinstance(query, str) or not query.strip():
            raise InputError("the query must be a non-empty string")
        if len(query) > MAX_QUERY_CHARS:
            raise InputError(f"the query has {len(query):,} characters; the limit is "
                             f"{MAX_QUERY_CHARS:,}")
        tenant_id = self._tenant(tenant)
        kind = SearchType(search_type or settings.search_type)
        limit = top_k or settings.top_k
        if limit < 1:
            raise InputError("top_k must be at least 1")
        expr = compile_filter(tenant_id, filters)
        timer = StageTimer()
        vector = None
        if kind is not SearchType.KEYWORD:
            with timer.stage("embed"):
                vector = await embedder.embed_query(query)
        reranking = not isinstance(reranker, NoReranker)
        request = SearchRequest(
            tenant=tenant_id, query_text=query, query_vector=vector, search_type=kind,
            limit=limit, expr=expr,
            fusion=settings.fusion, alpha=settings.hybrid_alpha, rrf_k=settings.rrf_k,
            candidate_limit=max(settings.candidate_limit, limit))
        with timer.stage("search"):
            hits = await store.search(request)
        if reranking:
            with timer.stage("rerank"):
                hits = await reranker.rerank(query, hits, min(settings.rerank_top_k, limit))
        total = timer.total_ms
        self._latency.record(timer.stage_ms, total)
        metrics = RetrievalMetrics(stage_ms=dict(timer.stage_ms), total_ms=total,
                                   target_latency_ms=settings.target_latency_ms)
        return RetrievalResult(query=query, tenant=tenant_id, search_type=kind, hits=tuple(hits),
                               metrics=metrics)

    # -- telemetry ------------------------------------------------------------------------

    def performance_report(self) -> PerformanceReport:
        """p50/p95/p99 per stage and SLA compliance over the recent retrievals."""
        return self._latency.report()

    def reset_performance(self) -> None:
        """Forget the latency samples recorded so far (e.g. after a warm-up call)."""
        self._latency = LatencyRecorder(self.config.pipeline.target_latency_ms)

    def get_performance_report(self) -> PerformanceReport:
        """The seed's name for :meth:`performance_report`."""
        return self.performance_report()

    def __repr__(self) -> str:
        state = "open" if self._opened else "closed"
        return f"<AdvancedRAGPipeline {self.config.milvus.uri!r} {state}>"
