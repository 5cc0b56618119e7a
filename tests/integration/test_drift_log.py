"""The query log and corpus samples through the real pipeline (Milvus Lite, packaged MiniLM,
SQLite): every retrieval is logged against its audit event, answers add their scores, ingests
sample chunk embeddings, and references are snapshots that survive the log changing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from advanced_rag import AdvancedRAGPipeline, Document
from advanced_rag.config import validate_config
from advanced_rag.drift.sampling import BottomKSample
from advanced_rag.drift.store import CorpusSampleRow, DriftStore, QueryLogRow, decode_vectors
from advanced_rag.errors import ConfigError, InputError
from compliance.audit import AuditEventType

pytestmark = pytest.mark.integration

DOCS = [Document(f"policy-{i}", f"Policy {i}. Loans above {i},000 euros need approval by "
                 f"committee {i}. Complaints are answered within {i} days.",
                 metadata={"title": f"Policy {i}"}) for i in range(1, 9)]


def config(tmp_path: Path, **drift: Any):  # type: ignore[no-untyped-def]
    return validate_config({"data_dir": str(tmp_path), "milvus": {"uri": str(tmp_path / "m.db")},
                            "chunking": {"max_tokens": 64, "min_tokens": 4},
                            "drift": {"corpus_sample": 5, **drift}})


async def rows(store: DriftStore, table: Any) -> list[Any]:
    from sqlmodel import Session

    with Session(store.engine) as session:
        return list(session.exec(select(table)).scalars().all())


async def test_retrievals_and_answers_are_logged_against_their_audit_events(
        embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with AdvancedRAGPipeline(config(tmp_path), embedder=embedder) as rag:
        await rag.ingest(DOCS, tenant="bank-a")
        result = await rag.retrieve("Who approves loans above 3,000 euros?", tenant="bank-a")
        await rag.retrieve("complaints", tenant="bank-a", search_type="keyword")
        answer = await rag.answer("How fast are complaints answered under policy 2?",
                                  tenant="bank-a")
        retrievals = await rag.compliance.query_audit_logs(AuditEventType.RETRIEVAL)
        await rag._drift.flush()  # type: ignore[union-attr]
        store = rag._drift.store  # type: ignore[union-attr]
        logged = sorted(await rows(store, QueryLogRow), key=lambda r: r.id)
        samples = await rows(store, CorpusSampleRow)
    assert [r.event_id for r in logged] == [e.event_id for e in retrievals]
    hybrid, keyword, answered = logged
    assert hybrid.tenant == "bank-a" and hybrid.search_type == "hybrid"
    assert hybrid.hits == len(result.hits) and hybrid.top_fused == max(h.score for h in result.hits)
    assert hybrid.retrieval_risk == result.metrics.hallucination_risk
    vector = decode_vectors([hybrid.embedding])[0]  # float16 of the query embedding
    expected = await embedder.embed_query("Who approves loans above 3,000 euros?")
    assert vector.shape == (embedder.dimension,) and np.allclose(vector, expected, atol=2e-3)
    assert keyword.embedding is None and keyword.top_bm25 is not None and keyword.top_fused is None
    assert answered.faithfulness == answer.quality.faithfulness_score
    assert answered.answer_risk == answer.quality.hallucination_risk
    assert hybrid.faithfulness is None
    assert len(samples) == 5 and {s.tenant for s in samples} == {"bank-a"}  # corpus_sample: 5


async def test_the_sample_is_the_same_whatever_the_batch_order() -> None:
    ids = [f"c{i}" for i in range(50)]
    vectors = np.eye(50, dtype=np.float32)
    forward, backward = BottomKSample(7), BottomKSample(7)
    forward.offer(ids, ids, vectors)
    for i in reversed(range(50)):
        backward.offer([ids[i]], [ids[i]], vectors[i:i + 1])
    assert [c for c, _, _ in forward.items()] == [c for c, _, _ in backward.items()]
    assert len(forward.items()) == 7 and BottomKSample(0).items() == []


async def test_references_are_snapshots_and_are_audited(embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with AdvancedRAGPipeline(config(tmp_path), embedder=embedder) as rag:
        await rag.ingest(DOCS, tenant="bank-a")
        before = datetime.now(UTC) - timedelta(seconds=1)
        for i in range(1, 6):
            await rag.retrieve(f"What does policy {i} say about loans?", tenant="bank-a")
        reference = await rag.capture_reference("launch", first=3, start=before, actor="ops")
        with pytest.raises(InputError, match="exists"):
            await rag.capture_reference("launch", first=3, start=before)
        again = await rag.capture_reference("launch", start=before, replace=True, actor="ops")
        loaded = await rag._drift.monitor.reference("launch")  # type: ignore[union-attr]
        [event, _] = await rag.compliance.query_audit_logs(AuditEventType.DRIFT_REFERENCE)
        with pytest.raises(InputError, match="no drift reference named 'nope'"):
            await rag._drift.monitor.reference("nope")  # type: ignore[union-attr]
    assert reference.size == 3 and again.size == 5 and loaded.size == 5
    assert loaded.ids == again.ids and loaded.embeddings.shape == (5, embedder.dimension)
    assert event.actor == "ops" and event.payload is not None and event.payload["size"] == 3
    assert event.payload["first_event_id"] == reference.ids[0]


async def test_drift_calls_need_the_query_log(embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    off = config(tmp_path, query_log=False, corpus_sample=0)
    async with AdvancedRAGPipeline(off, embedder=embedder) as rag:
        with pytest.raises(ConfigError, match="drift.query_log"):
            await rag.detect_drift(["a question"])


def banking_queries(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    subjects = ["loan", "mortgage", "credit card", "savings account", "overdraft", "complaint",
                "wire transfer", "direct debit"]
    asks = ["How do I apply for a {s}?", "What fees apply to a {s}?", "Who approves a {s} above "
            "{n} euros?", "How long does a {s} take to process?", "Can I cancel my {s}?",
            "What documents do I need for a {s}?"]
    return [rng.choice(asks).format(s=rng.choice(subjects), n=int(rng.integers(1, 90)) * 1000)
            for _ in range(n)]


COOKING = ["How long should I roast a chicken?", "What can replace eggs in a cake?",
           "How do I make sourdough starter?", "Which wine goes with salmon?",
           "How do I keep basil fresh?", "What is the best way to cook rice?",
           "How do I caramelise onions?", "Why did my souffle collapse?"]


async def test_detect_drift_on_sample_queries(embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = config(tmp_path, min_reference=50, min_current=30, permutations=300)
    async with AdvancedRAGPipeline(cfg, embedder=embedder) as rag:
        await rag.ingest(DOCS, tenant="bank-a")
        for query in banking_queries(80, seed=1):
            await rag.retrieve(query, tenant="bank-a", top_k=3)
        await rag.capture_reference("default", first=80, actor="ops")
        same = await rag.detect_drift(banking_queries(40, seed=2), actor="ops")
        moved = await rag.detect_drift(banking_queries(25, seed=3) + COOKING * 2)
        small = await rag.detect_drift(banking_queries(5, seed=4))
        events = await rag.compliance.query_audit_logs(AuditEventType.DRIFT_REPORT)
    assert str(same.status) == "no_drift" and not same.drift_detected
    assert moved.drift_detected and moved.drift_magnitude is not None
    assert moved.drift_magnitude > (same.drift_magnitude or 0.0)
    assert {t.result.family for t in moved.tests} == {"query"}  # sample queries: embeddings only
    assert str(small.status) == "insufficient_data" and small.tests == ()
    assert [e.payload["report"]["status"] for e in events if e.payload] == [
        "no_drift", "drift", "insufficient_data"]


async def test_drift_calls_respect_tenant_access(embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from advanced_rag.errors import AccessDeniedError

    cfg = config(tmp_path).model_copy(update={"access": validate_config(
        {"access": {"actor_tenants": {"teller": ["bank-a"], "ops": ["*"]}}}).access})
    async with AdvancedRAGPipeline(cfg, embedder=embedder) as rag:
        await rag.ingest(DOCS, tenant="bank-a", actor="ops")
        await rag.retrieve("loans", tenant="bank-a", actor="teller")
        with pytest.raises(AccessDeniedError, match="every tenant"):
            await rag.capture_reference("all", first=1, actor="teller")
        with pytest.raises(AccessDeniedError):
            await rag.detect_drift(["loans"], tenant="bank-b", actor="teller")
        mine = await rag.capture_reference("mine", first=1, tenant="bank-a", actor="teller")
        denied = await rag.compliance.query_audit_logs(AuditEventType.ACCESS_DENIED)
    assert mine.size == 1 and len(denied) == 2
