"""answer() and score() through the real pipeline: Milvus Lite, packaged MiniLM, the extractive
generator and the packaged FeatureJudge, with every step in the audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from advanced_rag import AdvancedRAGPipeline, Document
from advanced_rag.answering import Decision
from advanced_rag.config import validate_config
from advanced_rag.generate import REFUSAL
from advanced_rag.scoring.base import Verdict
from compliance.audit import AuditEventType

pytestmark = pytest.mark.integration

DOCS = [
    Document("loans", "Loans above 250,000 euros are approved by the credit committee. "
                      "Smaller loans are approved by the branch manager within five business "
                      "days.", metadata={"title": "Loan approval"}),
    Document("complaints", "Complaints are acknowledged within two business days. A final "
                           "response is sent within fifteen business days.",
             metadata={"title": "Complaints handling"}),
]


def config(tmp_path: Path, **pipeline: Any):  # type: ignore[no-untyped-def]
    return validate_config({"data_dir": str(tmp_path), "milvus": {"uri": str(tmp_path / "m.db")},
                            "chunking": {"max_tokens": 64, "min_tokens": 4},
                            "pipeline": {"top_k": 3, **pipeline}})


@pytest.fixture
async def rag(embedder, tmp_path: Path) -> AsyncIterator[AdvancedRAGPipeline]:  # type: ignore[no-untyped-def]
    async with AdvancedRAGPipeline(config(tmp_path), embedder=embedder) as pipeline:
        await pipeline.ingest(DOCS, tenant="bank-a")
        yield pipeline


async def test_answer_is_cited_scored_and_audited_as_one_request(rag: AdvancedRAGPipeline) -> None:
    answer = await rag.answer("Who approves loans above 250,000 euros?", tenant="bank-a",
                              actor="alice", request_id="req-9")
    assert answer.text is not None and "credit committee" in answer.text
    assert answer.citations and answer.citations[0].doc_id == "loans"
    assert {c.chunk_id for c in answer.citations} <= {h.chunk_id for h in answer.hits}
    quality = answer.quality
    assert quality.judge == "feature-judge" and quality.claims
    assert quality.hallucination_risk is not None and quality.hallucination_risk < 0.5
    assert answer.decision is Decision.RETURNED  # the extractive answer scores as faithful
    assert set(answer.latency_ms) >= {"retrieve", "generate", "score", "audit", "total"}

    cm = rag.compliance
    [retrieval] = await cm.query_audit_logs(AuditEventType.RETRIEVAL)
    [generation] = await cm.query_audit_logs(AuditEventType.GENERATION)
    [scoring] = await cm.query_audit_logs(AuditEventType.SCORING)
    assert generation.parent_event_id == retrieval.event_id
    assert scoring.parent_event_id == generation.event_id
    assert {retrieval.request_id, generation.request_id, scoring.request_id} == {"req-9"}
    assert generation.payload is not None and generation.payload["answer"] == answer.text
    assert [c["chunk_id"] for c in generation.payload["citations"]] == [
        c.chunk_id for c in answer.citations]
    assert scoring.payload is not None
    assert scoring.payload["judge_version"] == quality.judge_version
    assert scoring.payload["hallucination_risk"] == quality.hallucination_risk
    assert scoring.payload["decision"] == "returned"


async def test_unrelated_question_is_refused(rag: AdvancedRAGPipeline) -> None:
    answer = await rag.answer("When did the volcano on Iceland last erupt?", tenant="bank-a")
    assert answer.decision is Decision.REFUSED and answer.text == REFUSAL
    assert answer.quality.hallucination_risk is None and answer.quality.reason


async def test_high_risk_answers_are_withheld_and_the_decision_is_audited(
        embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    strict = config(tmp_path, max_hallucination_risk=0.0, on_high_risk="withhold")
    async with AdvancedRAGPipeline(strict, embedder=embedder) as rag:
        await rag.ingest(DOCS, tenant="bank-a")
        answer = await rag.answer("How fast are complaints acknowledged?", tenant="bank-a")
        [scoring] = await rag.compliance.query_audit_logs(AuditEventType.SCORING)
    assert answer.decision is Decision.WITHHELD and answer.withheld and answer.text is None
    assert answer.quality.hallucination_risk is not None  # the caller still sees why
    assert scoring.payload is not None and scoring.payload["decision"] == "withheld"


async def test_score_flags_a_changed_number_in_a_users_answer(rag: AdvancedRAGPipeline) -> None:
    contexts = [d.text for d in DOCS]
    faithful = await rag.score("How fast?", "Complaints are acknowledged within two business "
                               "days.", contexts, tenant="bank-a", actor="alice")
    altered = "Complaints are acknowledged within two business days. A final response is " \
              "sent within 45 business days."
    changed = await rag.score("How fast?", altered, contexts, tenant="bank-a", actor="alice")
    assert faithful.hallucination_risk is not None and changed.hallucination_risk is not None
    assert changed.hallucination_risk > faithful.hallucination_risk
    [bad] = changed.unsupported_claims
    assert altered[bad.claim.start:bad.claim.end].startswith("A final response")
    assert bad.verdict in (Verdict.UNSUPPORTED, Verdict.CONTRADICTED)
    assert bad.evidence is not None and bad.evidence.context_index == 1
    events = await rag.compliance.query_audit_logs(AuditEventType.SCORING, actor="alice")
    assert len(events) == 2 and events[1].payload is not None
    assert events[1].payload["unsupported_claims"][0]["start"] == bad.claim.start


async def test_nothing_to_score_is_none_with_a_reason(rag: AdvancedRAGPipeline) -> None:
    empty = await rag.score("q", "   ", ["context"], tenant="bank-a")
    assert (empty.faithfulness_score, empty.hallucination_risk) == (None, None)
    assert empty.reason == "empty answer"
    none = await rag.score("q", "An answer.", [], tenant="bank-a")
    assert none.hallucination_risk is None and "no contexts" in (none.reason or "")
