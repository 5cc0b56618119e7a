"""The async pipeline: ingest, retrieve (hybrid / dense / keyword), rerank, telemetry, audit.

Every call is recorded in the audit trail (``audit:`` in the config) with its actor, tenant,
latency and outcome, failures and refusals too. Under the default ``fail_closed`` policy a
call whose audit event cannot be committed raises :class:`AuditWriteError` and returns
nothing: no result leaves the pipeline unrecorded.

Example::

    from advanced_rag import AdvancedRAGPipeline, Document, load_config

    async with AdvancedRAGPipeline.from_config(load_config("config.yaml")) as rag:
        await rag.ingest([Document(id="kyc-1", text="...")], tenant="bank-a")
        hits, metrics = await rag.retrieve("When is enhanced due diligence required?",
                                           tenant="bank-a")
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from compliance.audit.models import MAX_TEXT, AuditEventType, new_event_id
from compliance.audit.trail import AuditTrail
from compliance.errors import AuditWriteError
from compliance.lineage import DocumentVersion, LineageStore

from . import recording
from .access import Principal, authorize, check_classifications, check_hits, readable
from .answering import Answer, Decision, decide
from .cache import QueryCache
from .config import PipelineConfig
from .drift.recorder import DriftRecorder
from .errors import AccessDeniedError, AdvancedRagError, ConfigError, InputError, TenantError
from .generate.base import Generator
from .ingestion import Ingestor, ProgressCallback
from .limits import check_text, check_top_k
from .protocols import Embedder, Reranker, SearchRequest, VectorStore, close_component
from .recording import CallContext
from .remote.calls import CallLog, collecting
from .remote.resilience import Resilience
from .rerank import CrossEncoderReranker, NoReranker
from .rerank.budget import RerankCost, RerankPlan, plan_rerank
from .scoring.base import Judge
from .scoring.quality import AnswerScorer, QualityScores, unscored
from .scoring.retrieval_risk import RiskAssessment, RiskModels, assess, load_risk_models, signature
from .store.filters import compile_filter
from .telemetry import LatencyRecorder, PerformanceReport, StageTimer
from .types import (
    Classification,
    Document,
    DocumentOutcome,
    Hit,
    IngestReport,
    MetadataFilter,
    ModelIdentity,
    RetrievalMetrics,
    RetrievalResult,
    SearchType,
)

if TYPE_CHECKING:
    from compliance.manager import ComplianceManager

    from .drift.detector import DriftReport
    from .drift.store import Reference
    from .health import HealthReport

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Searched:
    """What the search stage of one retrieval produced."""

    request: SearchRequest
    candidates: list[Hit]
    hits: list[Hit]
    cached: bool = False
    plan: RerankPlan | None = None


class AdvancedRAGPipeline:
    """Tenant-isolated retrieval over Milvus, with per-stage latency accounting.

    Build it with :meth:`from_config` (or pass your own components for tests and custom
    backends) and use it as an async context manager so connections and worker threads
    are released.
    """

    def __init__(self, config: PipelineConfig | None = None, *, embedder: Embedder | None = None,
                 store: VectorStore | None = None, reranker: Reranker | None = None,
                 generator: Generator | None = None, judge: Judge | None = None,
                 audit: AuditTrail | None = None) -> None:
        self.config = config or PipelineConfig()
        self._embedder = embedder
        self._store = store
        self._reranker = reranker
        self._generator = generator
        self._judge = judge
        self._audit = audit
        self._risk_models: RiskModels | None = None
        self._drift: DriftRecorder | None = None
        self._lineage: LineageStore | None = None
        self._owns_audit = audit is None
        self._session: str | None = None
        self._compliance: ComplianceManager | None = None
        self._opened = False
        self._owns_backends = True
        self._built: list[object] = []
        self._latency = LatencyRecorder(self.config.pipeline.target_latency_ms)
        self._resilience = Resilience(self.config.resilience)
        self._principal: Principal | None = None
        self._rerank_cost = RerankCost()
        cache = self.config.cache
        self._cache = (QueryCache(ttl_s=cache.ttl_s, max_entries=cache.max_entries,
                                  embeddings=cache.embeddings) if cache.enabled else None)

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
                                      reranker=self._reranker, generator=self._generator,
                                      judge=self._judge, audit=self._audit)
        sibling._session = self._session
        sibling._resilience = self._resilience
        sibling._principal = self._principal
        sibling._rerank_cost = self._rerank_cost
        sibling._cache = self._cache  # result keys include the settings that decide them
        sibling._risk_models = self._risk_models
        sibling._drift = self._drift
        sibling._lineage = self._lineage
        sibling._opened = self._opened
        sibling._owns_backends = False
        return sibling

    def bind(self, principal: Principal) -> AdvancedRAGPipeline:
        """A sibling sharing this pipeline's open backends whose calls run as ``principal``
        unless one is passed explicitly (e.g. one per authenticated web request)::

            alice = rag.bind(Principal("alice", "bank-a", clearance="confidential"))
            hits, _ = await alice.retrieve("KYC thresholds")
        """
        if not isinstance(principal, Principal):
            raise InputError(f"bind() needs a Principal, got {type(principal).__name__}")
        sibling = self.with_settings()
        sibling._principal = principal
        return sibling

    # -- lifecycle ------------------------------------------------------------------------

    async def open(self) -> AdvancedRAGPipeline:
        """Open the audit trail, load models, connect to Milvus, create and load the
        collection, and record ``config_loaded`` and ``model_loaded``. Idempotent."""
        if self._opened:
            return self
        from . import factory

        if self._audit is None:
            self._audit = AuditTrail.from_settings(self.config.audit, data_dir=self.config.data_dir,
                                                   erasure=self.config.erasure)
        try:
            await self._audit.open()
        except AdvancedRagError as exc:
            if self.config.audit.on_failure == "fail_closed":
                raise
            log.error("audit store unavailable, continuing without it (fail_open): %s", exc)
        resilience = self._resilience
        if self._embedder is None:
            self._embedder = await factory.build_embedder(
                self.config.embedder, resilience=resilience, data_dir=self.config.data_dir)
            self._built.append(self._embedder)
        if self._reranker is None:
            self._reranker = await factory.build_reranker(
                self.config.reranker, device=self.config.embedder.device, resilience=resilience)
            self._built.append(self._reranker)
        if self._generator is None:
            self._generator = await factory.build_generator(
                self.config.generator, embedder=self._embedder, resilience=resilience)
            self._built.append(self._generator)
        if self._judge is None:
            self._judge = await factory.build_judge(
                self.config.judge, embedder=self._embedder, device=self.config.embedder.device,
                resilience=resilience)
            self._built.append(self._judge)
        if self._risk_models is None and self.config.retrieval_risk.enabled:
            self._risk_models = self._load_risk_models()
        if self._store is None:
            self._store = factory.build_store(self.config, dimension=self._embedder.dimension)
        await self._store.open()
        drift = self.config.drift
        if self._drift is None and (drift.query_log or drift.corpus_sample):
            self._drift = await DriftRecorder.open(self.config)
        if self._lineage is None and self.config.audit.enabled:
            self._lineage = await LineageStore.open(self.config)
        self._opened = True
        try:
            await self._record_startup()
        except BaseException:
            await self.close()
            raise
        return self

    def _load_risk_models(self) -> RiskModels:
        path = self.config.retrieval_risk.model
        try:
            return load_risk_models(path)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot load the retrieval-risk model: {exc}",
                              key="retrieval_risk.model") from exc

    async def _record_startup(self) -> None:
        assert self._audit is not None and self._embedder is not None
        session = new_event_id()
        ctx = CallContext("system", None, request_id=session, session=None)
        events = [recording.config_event(self.config, ctx, event_id=session)]
        ctx = replace(ctx, session=session)
        events.append(recording.model_event("embedder", self._embedder.identity, ctx))
        for role, component in (("reranker", self._reranker), ("generator", self._generator),
                                ("judge", self._judge)):
            members = getattr(component, "members", None) or (component,)
            for position, member in enumerate(members):
                identity = getattr(member, "identity", None)
                if isinstance(identity, ModelIdentity):
                    name = role if position == 0 else f"{role}.fallback[{position - 1}]"
                    events.append(recording.model_event(name, identity, ctx))
        if self._risk_models is not None:
            events.append(recording.model_event("retrieval_risk", self._risk_models.identity, ctx))
        await self._audit.record(events)
        self._session = session

    async def close(self) -> None:
        if not self._owns_backends:
            self._opened = False
            return
        if self._store is not None and self._opened:
            await self._store.close()
        if self._drift is not None:
            await self._drift.close()
            self._drift = None
        if self._lineage is not None:
            await self._lineage.close()
            self._lineage = None
        for component in self._built:  # components passed in belong to the caller
            await close_component(component)
        self._built.clear()
        if self._compliance is not None:
            await self._compliance.close()
            self._compliance = None
        if self._audit is not None and self._owns_audit:
            await self._audit.close()
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

    def _context(self, actor: str, request_id: str | None,
                 principal: Principal | None = None) -> CallContext:
        """Who is calling: ``principal`` (or the bound one) names the actor; an explicit
        ``actor`` other than the default must then agree with it."""
        principal = principal if principal is not None else self._principal
        if principal is not None:
            if not isinstance(principal, Principal):
                raise InputError(f"principal must be a Principal, got {type(principal).__name__}")
            if actor not in ("system", principal.actor):
                raise InputError(f"actor {actor!r} differs from the principal's actor "
                                 f"{principal.actor!r}")
            actor = principal.actor
        for name, value in (("actor", actor), ("request_id", request_id)):
            if (value is not None or name == "actor") and (
                    not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT):
                raise InputError(f"{name} must be a non-empty string of at most {MAX_TEXT} "
                                 f"characters, got {value!r}")
        return CallContext(actor, None, request_id or new_event_id(), self._session,
                           principal=principal)

    def _trail(self) -> AuditTrail:
        if self._audit is None:
            raise AdvancedRagError("the pipeline is not open: use 'async with' or await open()")
        return self._audit

    async def _authorize(self, ctx: CallContext, tenant: str | None, operation: str,
                         filters: MetadataFilter | None = None) -> CallContext:
        """The call's context with its tenant and clearance, after the tenant id, the
        principal, the ``access`` rules and the filter's classes are checked (see
        :func:`.access.authorize`). A refusal is recorded as ``access_denied`` and raised
        (:class:`AccessDeniedError`, or :class:`TenantError` for a malformed id)."""
        try:
            tenant_id, clearance = authorize(
                ctx.principal, ctx.actor, tenant, operation, settings=self.config.access,
                default_tenant=self.config.pipeline.default_tenant)
            check_classifications(filters, clearance)
        except (TenantError, AccessDeniedError) as exc:
            trail = self._trail()
            fallback = (ctx.principal.tenant if ctx.principal is not None
                        else self.config.pipeline.default_tenant)
            await trail.record([recording.access_denied_event(
                trail, ctx, exc, operation=operation,
                requested_tenant=tenant if tenant is not None else fallback)])
            raise
        return replace(ctx, tenant=tenant_id,
                       clearance=None if clearance is Classification.RESTRICTED else clearance)

    async def _record_failure(self, kind: AuditEventType, ctx: CallContext, exc: Exception,
                              began: float, details: Mapping[str, Any]) -> None:
        """Record a failed call, then let the caller re-raise ``exc``. If the audit write
        fails too, under fail_closed that failure is raised instead (``exc`` as context)."""
        trail = self._trail()
        await trail.record([recording.failure_event(
            kind, trail, ctx, exc, latency_ms=(time.perf_counter() - began) * 1000,
            details=details)])

    @property
    def compliance(self) -> ComplianceManager:
        """The :class:`~compliance.ComplianceManager` over this pipeline's audit store."""
        from compliance.manager import ComplianceManager

        if self._compliance is None:
            self._compliance = ComplianceManager(self.config, trail=self._trail())
        return self._compliance

    @property
    def embedder(self) -> Embedder:
        return self._parts()[0]

    @property
    def store(self) -> VectorStore:
        return self._parts()[1]

    # -- ingest ---------------------------------------------------------------------------

    async def ingest(self, documents: Iterable[Document], *, tenant: str | None = None,
                     actor: str = "system", request_id: str | None = None,
                     progress: ProgressCallback | None = None,
                     principal: Principal | None = None) -> IngestReport:
        """Ingest documents for one tenant; unchanged documents are skipped, changed ones
        replace their previous version. Bad documents are listed in ``report.failed``.

        Each document gets an audit event (ingested / updated / skipped / failed, with its
        version, content hash and chunk ids), committed batch by batch as the batch is
        written. If that commit fails under fail_closed, the ingest stops with
        :class:`AuditWriteError`; the batch just written stays indexed (its ids are in the
        error message) and no later batch is touched.
        """
        embedder, store, _ = self._parts()
        ctx = await self._authorize(self._context(actor, request_id, principal), tenant, "ingest")
        trail = self._trail()

        remote = CallLog()
        reported = [0, 0]  # calls, fallbacks of ``remote`` already recorded

        async def record(outcomes: Sequence[DocumentOutcome]) -> None:
            events = recording.document_events(outcomes, ctx, trail)
            batch_calls = remote.since(*reported)
            if batch_calls:  # the embedding requests of this batch, with every attempt
                events.append(recording.provider_calls_event(
                    batch_calls, ctx, operation="ingest", doc_ids=[o.doc_id for o in outcomes]))
                reported[:] = [len(remote.calls), len(remote.fallbacks)]
            try:
                await trail.record(events)
            except AuditWriteError as exc:
                indexed = [o.doc_id for o in outcomes if o.chunk_ids]
                raise AuditWriteError(f"{exc} (indexed but unrecorded: {indexed[:20]}"
                                      f"{' ...' if len(indexed) > 20 else ''})") from exc
            if self._lineage is not None:
                assert ctx.tenant is not None
                await self._lineage.record_ingest(outcomes, tenant=ctx.tenant, actor=ctx.actor,
                                                  event_ids=[e.event_id for e in events[:len(outcomes)]])

        ingestor = Ingestor(store, embedder, self.config.chunking, self.config.ingest,
                            resilience=self._resilience)
        assert ctx.tenant is not None
        began = time.perf_counter()
        drift = self._drift
        sample = drift.sampler() if drift is not None else None
        try:
            with collecting(remote):
                report = await ingestor.ingest(
                    documents, tenant=ctx.tenant, progress=progress, on_batch=record,
                    on_written=None if sample is None else partial(DriftRecorder.offer, sample))
            if drift is not None and sample is not None:
                await drift.save_sample(sample, ctx.tenant)
            return report
        except AuditWriteError:
            raise
        except Exception as exc:  # per-document outcomes so far are recorded; say it stopped
            await self._record_failure(AuditEventType.DOCUMENT_FAILED, ctx, exc, began,
                                       {"operation": "ingest", "doc_id": None})
            raise
        finally:
            self._invalidate(ctx.tenant)

    async def delete_documents(self, doc_ids: Sequence[str], *, tenant: str | None = None,
                               actor: str = "system", request_id: str | None = None,
                               principal: Principal | None = None) -> int:
        """Delete every chunk of the given documents of one tenant; returns chunks deleted."""
        _, store, _ = self._parts()
        began = time.perf_counter()
        ctx = await self._authorize(self._context(actor, request_id, principal), tenant, "delete")
        assert ctx.tenant is not None
        ids = list(doc_ids)
        try:
            deleted = await store.delete_documents(ctx.tenant, ids)
            self._invalidate(ctx.tenant)
        except Exception as exc:
            await self._record_failure(AuditEventType.DOCUMENT_DELETED, ctx, exc, began,
                                       {"doc_ids": ids})
            raise
        event = recording.deletion_event(ids, deleted, ctx, (time.perf_counter() - began) * 1000)
        await self._trail().record([event])
        if self._drift is not None:
            await self._drift.store.delete_corpus_samples(ctx.tenant, ids)
        if self._lineage is not None:
            await self._lineage.record_removal(ids, tenant=ctx.tenant, actor=ctx.actor,
                                               change_type="delete",
                                               audit_event_id=event.event_id)
        return deleted

    async def forget_document(self, doc_id: str, tenant: str | None = None, *,
                              actor: str = "system", reason: str = "erasure request",
                              request_id: str | None = None,
                              principal: Principal | None = None) -> list[DocumentVersion]:
        """Erase a document (the seed's name): delete its chunks from Milvus, record an
        ``erasure`` audit event naming it, its versions and the reason (not its text), and mark
        every version erased in ``document_versions``. Returns the ``erase`` rows written."""
        _, store, _ = self._parts()
        began = time.perf_counter()
        ctx = await self._authorize(self._context(actor, request_id, principal), tenant,
                                    "forget_document")
        assert ctx.tenant is not None
        try:
            deleted = await store.delete_documents(ctx.tenant, [doc_id])
            self._invalidate(ctx.tenant)
        except Exception as exc:
            await self._record_failure(AuditEventType.ERASURE, ctx, exc, began,
                                       {"doc_id": doc_id})
            raise
        versions = [v.version for v in await self.get_document_lineage(doc_id, ctx.tenant)
                    if v.change_type in ("create", "update")]
        event = recording.document_erasure_event(
            doc_id, versions, deleted, ctx, reason=self._trail().text(reason),
            latency_ms=(time.perf_counter() - began) * 1000)
        await self._trail().record([event])
        if self._drift is not None:
            await self._drift.store.delete_corpus_samples(ctx.tenant, [doc_id])
        if self._lineage is None:
            return []
        return await self._lineage.record_removal([doc_id], tenant=ctx.tenant, actor=ctx.actor,
                                                  change_type="erase",
                                                  audit_event_id=event.event_id)

    async def get_document_lineage(self, doc_id: str,
                                   tenant: str | None = None) -> list[DocumentVersion]:
        """Every recorded version of ``doc_id`` (the seed's name): content hash, chunks,
        classification, who and when, create/update/delete/erase, retention date."""
        self._parts()
        if self._lineage is None:
            raise ConfigError("document lineage lives in the audit database: audit.enabled is "
                              "false", key="audit.enabled")
        return await self._lineage.lineage(doc_id, tenant)

    # -- retrieve -------------------------------------------------------------------------

    async def retrieve(self, query: str, *, tenant: str | None = None, top_k: int | None = None,
                       filters: MetadataFilter | None = None,
                       search_type: SearchType | str | None = None,
                       actor: str = "system", request_id: str | None = None,
                       principal: Principal | None = None) -> RetrievalResult:
        """Search one tenant's chunks; rerank when a reranker is configured.

        Returns a :class:`RetrievalResult`, which also unpacks as ``hits, metrics``. The
        ``retrieval`` audit event (and ``rerank``, its child) is committed before this
        returns; ``metrics.stage_ms["audit"]`` is what that commit cost.
        """
        ctx = await self._authorize(self._context(actor, request_id, principal), tenant,
                                    "retrieve", filters)
        result, _ = await self._retrieve(ctx, query, top_k, filters, search_type)
        return result

    async def _retrieve(self, ctx: CallContext, query: str, top_k: int | None,
                        filters: MetadataFilter | None, search_type: SearchType | str | None
                        ) -> tuple[RetrievalResult, str]:
        """retrieve() for an authorised call; also returns its audit event id."""
        self._parts()
        began = time.perf_counter()
        settings = self.config.pipeline
        event_id = new_event_id()
        timer = StageTimer()
        with collecting() as remote:
            try:
                found = await self._search(query, ctx, top_k, filters, search_type, timer)
            except Exception as exc:
                details: dict[str, Any] = {
                    "search_type": str(search_type or settings.search_type),
                    "top_k": top_k if type(top_k) is int else settings.top_k,
                    **remote.payload()}
                if isinstance(query, str) and query.strip():
                    details.update(self._trail().query_fields(
                        query[:settings.max_query_chars].encode("utf-8", "replace")
                        .decode("utf-8")))
                await self._record_failure(AuditEventType.RETRIEVAL, ctx, exc, began, details)
                raise
        request, candidates, hits = found.request, found.candidates, found.hits
        _, _, reranker = self._parts()
        reranked = None if isinstance(reranker, NoReranker) else reranker.name
        with timer.stage("risk"):
            risk = self._risk(query, request, hits)
        trail = self._trail()
        with timer.stage("audit"):  # building the events and committing them
            await trail.record(recording.retrieval_events(
                trail, ctx, query=query, request=request, filters=filters,
                candidates=candidates, hits=hits, reranker=reranked,
                rerank_top_k=min(settings.rerank_top_k, request.limit),
                stage_ms=dict(timer.stage_ms), event_id=event_id, risk=risk, remote=remote,
                cached=found.cached, rerank_plan=found.plan))
        if self._drift is not None:
            assert ctx.tenant is not None
            self._drift.log_retrieval(event_id, ctx.tenant, request, hits, risk.risk)
        total = timer.total_ms
        self._latency.record(timer.stage_ms, total)
        metrics = RetrievalMetrics(stage_ms=dict(timer.stage_ms), total_ms=total,
                                   target_latency_ms=settings.target_latency_ms,
                                   hallucination_risk=risk.risk,
                                   hallucination_risk_reason=risk.reason,
                                   rerank=None if found.plan is None else found.plan.to_payload())
        assert ctx.tenant is not None
        return RetrievalResult(query=query, tenant=ctx.tenant, search_type=request.search_type,
                               hits=tuple(hits), metrics=metrics), event_id

    def _risk(self, query: str, request: SearchRequest, hits: Sequence[Hit]) -> RiskAssessment:
        """Retrieval-time risk of ``hits`` under this pipeline's settings (see
        :mod:`.scoring.retrieval_risk`)."""
        if self._risk_models is None:
            return RiskAssessment(None, "retrieval_risk.enabled is false", None)
        return assess(self._risk_models, signature(self.config, request.search_type), query,
                      hits, request.limit)

    async def _search(self, query: str, ctx: CallContext, top_k: int | None,
                      filters: MetadataFilter | None, search_type: SearchType | str | None,
                      timer: StageTimer) -> _Searched:
        """Validate, embed, search, rerank: the request, the first-stage hits, the final hits,
        whether they came from the query cache, and the rerank budget decision."""
        embedder, store, reranker = self._parts()
        settings = self.config.pipeline
        check_text(query, name="the query", max_chars=settings.max_query_chars,
                   setting="pipeline.max_query_chars")
        try:
            kind = SearchType(search_type or settings.search_type)
        except ValueError:
            raise InputError(f"search_type {search_type!r} is not one of "
                             f"{', '.join(t.value for t in SearchType)}") from None
        limit = check_top_k(top_k, settings.top_k, settings.max_top_k)
        assert ctx.tenant is not None
        expr = compile_filter(ctx.tenant, filters,
                              readable=None if ctx.clearance is None else readable(ctx.clearance))
        key = self._cache_key(ctx.tenant, query, kind, limit, expr, reranker.name)
        cached = self._cached(key)
        if cached is not None:
            return _Searched(*cached, cached=True)
        vector = None
        if kind is not SearchType.KEYWORD:
            with timer.stage("embed"):
                vector = await self._embed_query(embedder, query)
        request = SearchRequest(
            tenant=ctx.tenant, query_text=query, query_vector=vector, search_type=kind,
            limit=limit, expr=expr,
            fusion=settings.fusion, alpha=settings.hybrid_alpha, rrf_k=settings.rrf_k,
            candidate_limit=max(settings.candidate_limit, limit))
        with timer.stage("search"):
            candidates = await store.search(request)
        check_hits(candidates, ctx.tenant, ctx.clearance)
        hits, plan = candidates, None
        if not isinstance(reranker, NoReranker):
            with timer.stage("rerank"):
                hits, plan = await self._rerank(reranker, query, candidates,
                                                min(settings.rerank_top_k, limit), timer)
        if key is not None and self._cache is not None:
            try:
                self._cache.results.put(key, (request, candidates, hits))
            except Exception:  # fail open
                log.warning("query cache store failed", exc_info=True)
        return _Searched(request, candidates, hits, plan=plan)

    async def _rerank(self, reranker: Reranker, query: str, candidates: list[Hit], top: int,
                      timer: StageTimer) -> tuple[list[Hit], RerankPlan]:
        """Rerank the first-stage top that fits ``target_latency_ms`` (see
        :mod:`.rerank.budget`); unreranked candidates follow in first-stage order."""
        settings = self.config.reranker
        cost = self._rerank_cost
        primary = (getattr(reranker, "members", None) or (reranker,))[0]
        if settings.budget == "fixed" or not isinstance(primary, CrossEncoderReranker):
            reason = ("fixed: reranking every candidate" if settings.budget == "fixed" else
                      "not a local cross-encoder (its cost does not grow with the candidates): "
                      "reranking every candidate")
            plan = RerankPlan(len(candidates), len(candidates), None, cost.per_passage_ms,
                              reason)
        else:
            plan = plan_rerank(len(candidates), elapsed_ms=timer.total_ms,
                               target_ms=self.config.pipeline.target_latency_ms,
                               per_passage_ms=cost.per_passage_ms,
                               minimum=settings.min_candidates, reserve_ms=settings.reserve_ms)
        head, tail = candidates[:plan.reranked], candidates[plan.reranked:]
        began = time.perf_counter()
        reranked = await reranker.rerank(query, head, min(top, len(head)))
        cost.observe(len(head), (time.perf_counter() - began) * 1000.0)
        return [*reranked, *tail[:max(top - len(reranked), 0)]], plan

    # -- query cache (fails open: see .cache) ----------------------------------------------

    def _cache_key(self, tenant: str, query: str, kind: SearchType, limit: int, expr: str,
                   reranker: str) -> tuple[Hashable, ...] | None:
        """Everything that decides a result: the compiled expression carries tenant, clearance
        and filters; the settings carry fusion and rerank."""
        if self._cache is None:
            return None
        s = self.config.pipeline
        return self._cache.key(tenant, query, str(kind), limit, expr, str(s.fusion), s.hybrid_alpha,
                               s.rrf_k, s.candidate_limit, reranker, s.rerank_top_k)

    def _cached(self, key: tuple[Hashable, ...] | None
                ) -> tuple[SearchRequest, list[Hit], list[Hit]] | None:
        if key is None or self._cache is None:
            return None
        try:
            return self._cache.results.get(key)  # type: ignore[return-value]
        except Exception:  # fail open: a broken cache never fails a request
            log.warning("query cache lookup failed; searching instead", exc_info=True)
            return None

    async def _embed_query(self, embedder: Embedder, query: str) -> Any:
        cache = self._cache.embeddings if self._cache is not None else None
        if cache is None:
            return await embedder.embed_query(query)
        key = (embedder.identity.name, embedder.identity.sha256, query)
        try:
            vector = cache.get(key)
        except Exception:
            log.warning("query cache lookup failed; embedding instead", exc_info=True)
            vector = None
        if vector is None:
            vector = await embedder.embed_query(query)
            try:
                cache.put(key, vector)
            except Exception:  # fail open
                log.warning("query cache store failed", exc_info=True)
        return vector

    def _invalidate(self, tenant: str | None) -> None:
        """This process changed ``tenant``'s index: its cached results are dead."""
        if self._cache is not None and tenant is not None:
            self._cache.invalidate(tenant)

    # -- answer and score -----------------------------------------------------------------

    async def answer(self, query: str, *, tenant: str | None = None, top_k: int | None = None,
                     filters: MetadataFilter | None = None,
                     search_type: SearchType | str | None = None, actor: str = "system",
                     request_id: str | None = None,
                     principal: Principal | None = None) -> Answer:
        """Retrieve, generate a cited answer, score it claim by claim against the hits, and
        apply ``pipeline.max_hallucination_risk`` / ``on_high_risk`` (see :mod:`.answering`).

        Audited as ``retrieval``, then ``generation`` and its child ``scoring`` (answer,
        citations, judge and version, scores, unsupported claims, decision), committed
        before this returns — a withheld answer too.
        """
        ctx = await self._authorize(self._context(actor, request_id, principal), tenant,
                                    "answer", filters)
        result, retrieval_id = await self._retrieve(ctx, query, top_k, filters, search_type)
        generator, scorer = self._answer_parts()
        began = time.perf_counter()
        timer = StageTimer()
        contexts = [h.text for h in result.hits]
        with collecting() as remote:
            try:
                with timer.stage("generate"):
                    generation = await generator.generate(query, result.hits)
                generated = remote.since(0, 0)
                with timer.stage("score"):
                    quality = (unscored("the generator refused: no supporting passage",
                                        judge=scorer.judge.name, version=scorer.judge.version)
                               if generation.refused else
                               await scorer.score(query, generation.text, contexts))
            except Exception as exc:
                await self._record_failure(AuditEventType.GENERATION, ctx, exc, began,
                                           {"generator": generator.name, **remote.payload()})
                raise
        scored = remote.since(len(generated.calls), len(generated.fallbacks))
        settings = self.config.pipeline
        decision = decide(quality, refused=generation.refused,
                          max_risk=settings.max_hallucination_risk,
                          on_high_risk=settings.on_high_risk)
        trail = self._trail()
        stages = {"retrieve": result.metrics.total_ms, **timer.stage_ms}
        with timer.stage("audit"):
            await trail.record(recording.answer_events(
                trail, ctx, generation=generation, quality=quality, decision=str(decision),
                parent=retrieval_id, latency_ms=stages, remote=(generated, scored)))
        if self._drift is not None:
            self._drift.log_answer(retrieval_id, quality.faithfulness_score,
                                   quality.hallucination_risk)
        return Answer(text=None if decision is Decision.WITHHELD else generation.text,
                      citations=generation.citations, hits=result.hits, quality=quality,
                      decision=decision,
                      latency_ms={**stages, "audit": timer.stage_ms["audit"],
                                  "total": result.metrics.total_ms + timer.total_ms},
                      request_id=ctx.request_id)

    async def score(self, question: str, answer: str, contexts: Sequence[str], *,
                    tenant: str | None = None, actor: str = "system",
                    request_id: str | None = None,
                    principal: Principal | None = None) -> QualityScores:
        """Score an answer from your own LLM against the contexts it was given; audited.

        Example::

            quality = await rag.score(question, my_llm_answer, [h.text for h in hits])
            quality.hallucination_risk, [c.claim.text for c in quality.unsupported_claims]
        """
        ctx = await self._authorize(self._context(actor, request_id, principal), tenant, "score")
        _, scorer = self._answer_parts()
        limits = self.config.pipeline
        check_text(question, name="the question", max_chars=limits.max_query_chars,
                   setting="pipeline.max_query_chars", allow_empty=True)
        check_text(answer, name="the answer", max_chars=self.config.ingest.max_document_chars,
                   setting="ingest.max_document_chars", allow_empty=True)  # empty: unscored
        if isinstance(contexts, str) or len(contexts) > limits.max_top_k:
            raise InputError(f"contexts must be a sequence of at most {limits.max_top_k:,} "
                             "strings (pipeline.max_top_k)")
        for context in contexts:  # empty contexts are skipped by the scorer
            if not isinstance(context, str):
                raise InputError(f"contexts must be strings, got {type(context).__name__}")
            check_text(context, name="a context", max_chars=self.config.ingest.max_document_chars,
                       setting="ingest.max_document_chars", allow_empty=True)
        began = time.perf_counter()
        with collecting() as remote:
            try:
                quality = await scorer.score(question, answer, list(contexts))
            except Exception as exc:
                await self._record_failure(AuditEventType.SCORING, ctx, exc, began,
                                           {"judge": scorer.judge.name, **remote.payload()})
                raise
        trail = self._trail()
        await trail.record([recording.scoring_event(
            trail, ctx, question=question, answer=answer, contexts=len(contexts), quality=quality,
            latency_ms=(time.perf_counter() - began) * 1000, remote=remote)])
        return quality

    def _answer_parts(self) -> tuple[Generator, AnswerScorer]:
        self._parts()
        if self._generator is None or self._judge is None:
            raise AdvancedRagError("the pipeline is not open: use 'async with' or await open()")
        return self._generator, AnswerScorer(self._judge)

    # -- drift ----------------------------------------------------------------------------

    def _drift_recorder(self) -> DriftRecorder:
        self._parts()
        if self._drift is None:
            raise ConfigError("drift monitoring is off: set drift.query_log: true",
                              key="drift.query_log")
        return self._drift

    async def _authorize_scope(self, actor: str, tenant: str | None, operation: str,
                               principal: Principal | None = None) -> CallContext:
        """One tenant's drift data needs access to that tenant (a principal's scope is its
        own tenant); all tenants' (``tenant=None`` without a principal) needs ``"*"`` in
        ``access.actor_tenants`` when access rules are configured."""
        ctx = self._context(actor, None, principal)
        if tenant is not None or ctx.principal is not None or self.config.access.require_principal:
            return await self._authorize(ctx, tenant, operation)
        rules = self.config.access.actor_tenants
        if rules is not None and "*" not in rules.get(actor, ()):
            exc = AccessDeniedError(f"actor {actor!r} may not read every tenant's queries")
            trail = self._trail()
            await trail.record([recording.access_denied_event(
                trail, ctx, exc, operation=operation, requested_tenant="*")])
            raise exc
        return ctx

    async def capture_reference(self, name: str | None = None, *, start: datetime | None = None,
                                end: datetime | None = None, first: int | None = None,
                                tenant: str | None = None, replace: bool = False,
                                actor: str = "system",
                                principal: Principal | None = None) -> Reference:
        """Snapshot logged retrievals as a named drift reference (default ``drift.reference``):
        those in ``[start, end)``, or the ``first`` N from ``start`` on. Audited."""
        drift = self._drift_recorder()
        ctx = await self._authorize_scope(actor, tenant, "capture_reference", principal)
        tenant = ctx.tenant
        await drift.flush()
        reference = await drift.monitor.capture_reference(
            name or self.config.drift.reference, actor=actor, start=start, end=end, first=first,
            tenant=tenant, replace_existing=replace)
        await self._trail().record([recording.drift_reference_event(reference, ctx)])
        return reference

    async def detect_drift(self, sample_queries: Sequence[str] | None = None, *,
                           reference: str | None = None, start: datetime | None = None,
                           end: datetime | None = None, tenant: str | None = None,
                           actor: str = "system",
                           principal: Principal | None = None) -> DriftReport:
        """Compare current traffic with a reference (default ``drift.reference``).

        ``sample_queries`` (the seed's call) are embedded and compared on their embeddings;
        without them, the logged retrievals in ``[start, end)`` are compared on embeddings,
        scores and tenant/search-type shares. The report (verdict, tests, digest) is audited.
        Too few queries give status ``insufficient_data``, never a verdict."""
        from .drift.store import Reference

        drift = self._drift_recorder()
        embedder, _, _ = self._parts()
        ctx = await self._authorize_scope(actor, tenant, "detect_drift", principal)
        tenant = ctx.tenant
        await drift.flush()
        ref = await drift.monitor.reference(reference)
        if sample_queries is not None:
            import numpy as np

            texts = [q for q in sample_queries if isinstance(q, str) and q.strip()]
            vectors = [await embedder.embed_query(q) for q in texts]  # as retrieve() embeds
            current = Reference(
                name="sample", ids=tuple(f"sample-{i}" for i in range(len(texts))), times=(),
                scores={}, categories={},
                embeddings=np.stack(vectors).astype(np.float32) if vectors else
                np.zeros((0, ref.embeddings.shape[1]), dtype=np.float32))
        else:
            current = await drift.store.window("current", start=start, end=end, tenant=tenant)
        report = await drift.monitor.compare(ref, current)
        await self._trail().record([recording.drift_event(report, ctx, reference=ref.name,
                                                          period=None)])
        return report

    # -- health ---------------------------------------------------------------------------

    async def health(self, *, timeout_s: float = 10.0) -> HealthReport:
        """Check every configured dependency (see :mod:`.health`): the audit store writable,
        Milvus reachable with the collection loaded, the embedder encoding, the reranker,
        generator and judge (hosted ones with a cheap call), all concurrently, each under
        ``timeout_s``. Never raises for a down dependency: ``report.ok`` is false instead."""
        from .health import HealthReport, role_checks, run_check

        embedder, store, reranker = self._parts()
        checks = []
        if self._audit is not None and self._audit.enabled:
            trail = self._audit
            checks.append(run_check("audit_store", trail.store.check_writable,
                                    timeout_s=timeout_s))
        probe = getattr(store, "probe", None)
        if callable(probe):
            checks.append(run_check("milvus", probe, timeout_s=timeout_s))

        async def embed() -> str:
            vector = await embedder.embed_query("health check")
            return f"{embedder.identity.name}: {len(vector)}-d"

        checks.append(run_check("embedder", embed, timeout_s=timeout_s))
        results = list(await asyncio.gather(*checks))
        roles = await asyncio.gather(*(role_checks(role, component, timeout_s=timeout_s)
                                       for role, component in (("reranker", reranker),
                                                               ("generator", self._generator),
                                                               ("judge", self._judge))
                                       if component is not None))
        for group in roles:
            results.extend(group)
        return HealthReport(tuple(results), tuple(self._resilience.breakers()))

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
