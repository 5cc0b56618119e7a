"""What the pipeline records: pure functions from its operations to audit events.

Each function returns :class:`~compliance.audit.AuditEvent` values (payload canonicalised
and digested on construction); the pipeline hands them to its ``AuditTrail``. Free text
(queries, error messages) goes through the trail's redaction before it lands in a payload;
identifiers, versions, hashes and scores are recorded as they are. API keys and other
secrets never reach these functions: the config holds only the names of the environment
variables that contain them.

Example::

    events = retrieval_events(trail, result, ctx, request=req, filters=None, reranker="none")
    await trail.record(events)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from compliance.audit.hashing import rfc3339
from compliance.audit.models import AuditEvent, AuditEventType

from .protocols import SearchRequest
from .types import Classification, DocumentOutcome, DocumentStatus, Hit, MetadataFilter, ModelIdentity

if TYPE_CHECKING:
    from compliance.audit.trail import AuditTrail

    from .access import Principal
    from .config import PipelineConfig
    from .drift.detector import DriftReport
    from .drift.store import Reference
    from .generate.base import Generation
    from .remote.calls import CallLog
    from .rerank.budget import RerankPlan
    from .scoring.quality import QualityScores
    from .scoring.retrieval_risk import RiskAssessment

__all__ = [
    "CallContext",
    "access_denied_event",
    "answer_events",
    "config_digest",
    "config_event",
    "deletion_event",
    "document_erasure_event",
    "document_events",
    "drift_event",
    "drift_reference_event",
    "failure_event",
    "filter_payload",
    "hits_payload",
    "model_event",
    "provider_calls_event",
    "quality_payload",
    "retrieval_events",
    "scoring_event",
]

_STATUS_EVENT = {
    DocumentStatus.NEW: AuditEventType.DOCUMENT_INGESTED,
    DocumentStatus.UPDATED: AuditEventType.DOCUMENT_UPDATED,
    DocumentStatus.UNCHANGED: AuditEventType.DOCUMENT_SKIPPED,
    DocumentStatus.FAILED: AuditEventType.DOCUMENT_FAILED,
}


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who made one pipeline call, for whom, and how it is tied to the rest of the log.

    ``session`` is the event id of the ``config_loaded`` event written when the pipeline
    opened: every later event names it, so an auditor can tell which configuration and
    models served a request.
    """

    actor: str
    tenant: str | None
    request_id: str
    session: str | None
    principal: Principal | None = None
    clearance: Classification | None = None  # None: every class (no clearance clause)


_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*:)[^@\s]*(?=@)")


def public_config(config: PipelineConfig) -> dict[str, Any]:
    """The config as recorded: every ``scheme://user:password@host`` (an ``audit.url`` someone
    wrote with a password in it, say) has its password replaced by ``***``.

    Example::

        >>> _mask("postgresql+psycopg://rag_app:s3cret@db/rag")
        'postgresql+psycopg://rag_app:***@db/rag'
    """
    return _mask(config.model_dump(mode="json", by_alias=True))  # type: ignore[no-any-return]


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\g<head>***", value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def config_digest(config: PipelineConfig) -> str:
    """SHA-256 of the recorded config's canonical JSON (sorted keys, defaults included;
    passwords in URLs masked, so the digest cannot be used to guess them offline)."""
    text = json.dumps(public_config(config), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _event(kind: AuditEventType, ctx: CallContext, payload: dict[str, Any], *,
           parent: str | None = None, event_id: str | None = None) -> AuditEvent:
    body = {"session": ctx.session, **payload} if ctx.session else payload
    if event_id is None:
        return AuditEvent(kind, ctx.actor, body, tenant=ctx.tenant, request_id=ctx.request_id,
                          parent_event_id=parent)
    return AuditEvent(kind, ctx.actor, body, tenant=ctx.tenant, request_id=ctx.request_id,
                      parent_event_id=parent, event_id=event_id)


def config_event(config: PipelineConfig, ctx: CallContext, *, event_id: str) -> AuditEvent:
    """``config_loaded``: the full effective config and its digest. Secrets are never config
    values (the config names the variables holding them); a password written into a URL
    anyway is masked."""
    return _event(AuditEventType.CONFIG_LOADED, ctx,
                  {"config_sha256": config_digest(config), "config": public_config(config)},
                  event_id=event_id)


def model_event(role: str, identity: ModelIdentity, ctx: CallContext) -> AuditEvent:
    """``model_loaded``: which model fills ``role`` (embedder, reranker), by weights SHA-256."""
    payload: dict[str, Any] = {"role": role, "model": identity.name,
                               "weights_sha256": identity.sha256, "dimension": identity.dimension}
    if identity.endpoint is not None:  # hosted: the digest names endpoint and model, not weights
        payload["endpoint"] = identity.endpoint
    return _event(AuditEventType.MODEL_LOADED, ctx, payload)


def document_events(outcomes: Sequence[DocumentOutcome], ctx: CallContext,
                    trail: AuditTrail) -> list[AuditEvent]:
    """One event per document: ingested / updated / skipped / failed."""
    out = []
    for o in outcomes:
        payload: dict[str, Any] = {"doc_id": o.doc_id, "status": str(o.status),
                                   "version": o.version, "content_sha256": o.content_hash,
                                   "classification": o.classification, "source": o.source}
        if o.chunk_ids:
            payload["chunk_ids"] = list(o.chunk_ids)
        if o.reason is not None:
            payload["reason"] = trail.text(o.reason)
        out.append(_event(_STATUS_EVENT[o.status], ctx, payload))
    return out


def deletion_event(doc_ids: Sequence[str], chunks_deleted: int, ctx: CallContext,
                   latency_ms: float) -> AuditEvent:
    return _event(AuditEventType.DOCUMENT_DELETED, ctx,
                  {"doc_ids": list(doc_ids), "chunks_deleted": chunks_deleted,
                   "latency_ms": round(latency_ms, 3), "outcome": "ok"})


def document_erasure_event(doc_id: str, versions: Sequence[int], chunks_deleted: int,
                           ctx: CallContext, *, reason: str, latency_ms: float) -> AuditEvent:
    """``erasure`` of a document: which one, which versions, how many chunks; not its text."""
    return _event(AuditEventType.ERASURE, ctx, {
        "target": "document", "doc_id": doc_id, "versions": list(versions),
        "chunks_deleted": chunks_deleted, "reason": reason,
        "latency_ms": round(latency_ms, 3), "outcome": "ok"})


def filter_payload(spec: MetadataFilter | None) -> dict[str, Any] | None:
    """The caller's filter as plain JSON (only the constraints that were set)."""
    if spec is None:
        return None
    out: dict[str, Any] = {}
    for f in fields(spec):
        value = getattr(spec, f.name)
        if value is None or value == {} or value == ():
            continue
        if isinstance(value, datetime):
            value = rfc3339(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def hits_payload(hits: Sequence[Hit]) -> dict[str, Any]:
    """Returned chunks in rank order, column by column: ids, the document version each came
    from, and one score list per signal that was computed (``None`` where a hit lacks it).

    Columns rather than one object per hit: the same facts in less JSON, with far fewer
    nested objects to check and encode on the request path.
    """
    scores: dict[str, list[float | None]] = {}
    for name in ("dense", "bm25", "fused", "rerank"):
        column = [getattr(h.scores, name) for h in hits]
        if any(v is not None for v in column):
            scores[name] = column
    return {"chunk_id": [h.chunk_id for h in hits], "doc_id": [h.doc_id for h in hits],
            "doc_version": [h.doc_version for h in hits], "scores": scores}


def _search_fields(request: SearchRequest, filters: MetadataFilter | None) -> dict[str, Any]:
    return {"search_type": str(request.search_type), "top_k": request.limit,
            "filters": filter_payload(filters),
            "fusion": {"method": str(request.fusion), "alpha": request.alpha,
                       "rrf_k": request.rrf_k, "candidate_limit": request.candidate_limit}}


def retrieval_events(trail: AuditTrail, ctx: CallContext, *, query: str, request: SearchRequest,
                     filters: MetadataFilter | None, candidates: Sequence[Hit],
                     hits: Sequence[Hit], reranker: str | None, rerank_top_k: int,
                     stage_ms: Mapping[str, float], event_id: str,
                     risk: RiskAssessment | None = None,
                     remote: CallLog | None = None, cached: bool = False,
                     rerank_plan: RerankPlan | None = None) -> list[AuditEvent]:
    """``retrieval`` (what was asked and what came back), and a child ``rerank`` event when a
    reranker ran (what it saw and what it kept). Remote calls (query embedding, rerank API:
    every attempt, usage) and fallbacks taken are in the ``retrieval`` event."""
    payload = {**trail.query_fields(query), **_search_fields(request, filters),
               "results": hits_payload(candidates if reranker else hits),
               "latency_ms": {k: round(v, 3) for k, v in stage_ms.items()}, "outcome": "ok",
               **(remote.payload() if remote else {})}
    if cached:  # served from the query cache: the same hits as the request that filled it
        payload["cache"] = "hit"
    if risk is not None:
        payload["retrieval_risk"] = {"value": risk.risk, "model": risk.model,
                                     "reason": risk.reason}
    events = [_event(AuditEventType.RETRIEVAL, ctx, payload, event_id=event_id)]
    if reranker:
        events.append(_event(AuditEventType.RERANK, ctx, {
            "reranker": reranker, "candidates": len(candidates), "top_k": rerank_top_k,
            "results": hits_payload(hits),
            "latency_ms": round(stage_ms.get("rerank", 0.0), 3), "outcome": "ok",
            **({"budget": rerank_plan.to_payload()} if rerank_plan is not None else {})},
            parent=event_id))
    return events


def failure_event(kind: AuditEventType, trail: AuditTrail, ctx: CallContext, error: BaseException,
                  *, latency_ms: float, details: Mapping[str, Any]) -> AuditEvent:
    """The event of a call that raised: what was attempted, the error class and message."""
    return _event(kind, ctx, {**details, "outcome": "error", "error": type(error).__name__,
                              "message": trail.text(str(error)),
                              "latency_ms": round(latency_ms, 3)})


def access_denied_event(trail: AuditTrail, ctx: CallContext, error: BaseException, *,
                        operation: str, requested_tenant: object) -> AuditEvent:
    """``access_denied``: who asked for which tenant, for what, and why it was refused."""
    asked = requested_tenant if isinstance(requested_tenant, str | None) else repr(requested_tenant)
    payload: dict[str, Any] = {
        "operation": operation, "requested_tenant": trail.text(asked) if asked else asked,
        "error": type(error).__name__, "message": trail.text(str(error)), "outcome": "denied"}
    if ctx.principal is not None:
        payload["principal"] = {"tenant": ctx.principal.tenant,
                                "roles": sorted(ctx.principal.roles),
                                "clearance": ctx.principal.clearance.value}
    return _event(AuditEventType.ACCESS_DENIED, ctx, payload)


def quality_payload(quality: QualityScores, trail: AuditTrail) -> dict[str, Any]:
    """Scores, the judge and its version, and every claim that was not supported: its span in
    the answer, verdict, support and the evidence the judge tried (context and sentence span)."""
    return {
        "judge": quality.judge, "judge_version": quality.judge_version,
        "faithfulness_score": quality.faithfulness_score,
        "hallucination_risk": quality.hallucination_risk, "claims": len(quality.claims),
        "reason": quality.reason,
        "unsupported_claims": [{
            "text": trail.text(j.claim.text), "start": j.claim.start, "end": j.claim.end,
            "verdict": str(j.verdict), "support": j.support,
            "evidence": None if j.evidence is None else {
                "context_index": j.evidence.context_index, "start": j.evidence.start,
                "end": j.evidence.end}} for j in quality.unsupported_claims]}


def answer_events(trail: AuditTrail, ctx: CallContext, *, generation: Generation,
                  quality: QualityScores, decision: str, parent: str | None,
                  latency_ms: Mapping[str, float],
                  remote: tuple[CallLog, CallLog] | None = None) -> list[AuditEvent]:
    """``generation`` (the answer given, its citations, model, tokens) and its child
    ``scoring`` (the judge's verdicts and the risk-policy decision). ``remote``: the remote
    calls and fallbacks of generating and of scoring, each into its own event."""
    generated, scored = remote or (None, None)
    generation_event = _event(AuditEventType.GENERATION, ctx, {
        "generator": generation.model, "answer": trail.text(generation.text),
        "refused": generation.refused, "decision": decision,
        "citations": [{"number": c.number, "chunk_id": c.chunk_id, "doc_id": c.doc_id,
                       "doc_version": c.doc_version} for c in generation.citations],
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "latency_ms": {k: round(v, 3) for k, v in latency_ms.items()}, "outcome": "ok",
        **(generated.payload() if generated else {})},
        parent=parent)
    scoring_event = _event(AuditEventType.SCORING, ctx, {
        **quality_payload(quality, trail), "decision": decision, "outcome": "ok",
        "latency_ms": round(latency_ms.get("score", 0.0), 3),
        **(scored.payload() if scored else {})}, parent=generation_event.event_id)
    return [generation_event, scoring_event]


def scoring_event(trail: AuditTrail, ctx: CallContext, *, question: str, answer: str,
                  contexts: int, quality: QualityScores, latency_ms: float,
                  remote: CallLog | None = None) -> AuditEvent:
    """``scoring`` of an answer the caller brought (from their own LLM)."""
    return _event(AuditEventType.SCORING, ctx, {
        **trail.query_fields(question), "answer": trail.text(answer), "contexts": contexts,
        **quality_payload(quality, trail), "outcome": "ok", "latency_ms": round(latency_ms, 3),
        **(remote.payload() if remote else {})})


def provider_calls_event(remote: CallLog, ctx: CallContext, *, operation: str,
                         doc_ids: Sequence[str]) -> AuditEvent:
    """``provider_calls``: the remote calls of work that has no single event of its own (an
    ingest batch's embedding requests), naming the documents they were made for."""
    return _event(AuditEventType.PROVIDER_CALLS, ctx, {
        "operation": operation, "doc_ids": list(doc_ids), **remote.payload()})


def drift_reference_event(reference: Reference, ctx: CallContext) -> AuditEvent:
    """``drift_reference``: a reference snapshot was captured (what, from when, how many)."""
    return _event(AuditEventType.DRIFT_REFERENCE, ctx, {
        "name": reference.name, "description": reference.description, "size": reference.size,
        "tenant": reference.tenant,
        "window_start": rfc3339(reference.window_start) if reference.window_start else None,
        "window_end": rfc3339(reference.window_end) if reference.window_end else None,
        "first_event_id": reference.ids[0] if reference.ids else None,
        "last_event_id": reference.ids[-1] if reference.ids else None})


def report_digest(data: Mapping[str, Any]) -> str:
    """SHA-256 of a report's canonical JSON (sorted keys): what the audit event vouches for."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode("utf-8")).hexdigest()


def drift_event(report: DriftReport, ctx: CallContext, *, reference: str, period: str | None,
                files: Mapping[str, str] | None = None, digest: str | None = None) -> AuditEvent:
    """``drift_report``: the whole report (verdict, every test, affected query event ids,
    recommendations; no query text), the files written and ``digest``, the SHA-256 of the
    JSON file's canonical content (default: of the report alone)."""
    data = report.to_dict()
    return _event(AuditEventType.DRIFT_REPORT, ctx, {
        "reference": reference, "period": period,
        "report_sha256": digest or report_digest(data),
        "files": dict(files or {}), "report": data})
