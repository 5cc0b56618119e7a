"""Retrieval-time risk through the real pipeline: Milvus Lite, packaged MiniLM, the packaged
risk models; the value is in the metrics and in the retrieval's audit event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from advanced_rag import AdvancedRAGPipeline, Document
from advanced_rag.config import validate_config
from advanced_rag.errors import ConfigError
from compliance.audit import AuditEventType

pytestmark = pytest.mark.integration

DOCS = [
    Document("loans", "Loans above 250,000 euros are approved by the credit committee. "
                      "Smaller loans are approved by the branch manager within five business "
                      "days.", metadata={"title": "Loan approval"}),
    Document("complaints", "Complaints are acknowledged within two business days. A final "
                           "response is sent within fifteen business days.",
             metadata={"title": "Complaints handling"}),
    Document("travel", "Staff travel above 1,000 euros needs the approval of a director.",
             metadata={"title": "Travel policy"}),
]


def config(tmp_path: Path, **sections: Any):  # type: ignore[no-untyped-def]
    return validate_config({"data_dir": str(tmp_path), "milvus": {"uri": str(tmp_path / "m.db")},
                            "chunking": {"max_tokens": 64, "min_tokens": 4}, **sections})


async def test_risk_is_lower_when_the_corpus_answers_and_is_audited(
        embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async with AdvancedRAGPipeline(config(tmp_path), embedder=embedder) as rag:
        await rag.ingest(DOCS, tenant="bank-a")
        answered = await rag.retrieve("Who approves loans above 250,000 euros?", tenant="bank-a",
                                      top_k=2)
        unanswered = await rag.retrieve("Which volcano erupted in Iceland in 2010?",
                                        tenant="bank-a", top_k=2)
        first, second = await rag.compliance.query_audit_logs(AuditEventType.RETRIEVAL)
    low, high = answered.metrics.hallucination_risk, unanswered.metrics.hallucination_risk
    assert low is not None and high is not None and 0.0 <= low < high <= 1.0
    assert answered.metrics["hallucination_risk_reason"] is None
    assert first.payload is not None and second.payload is not None
    assert first.payload["retrieval_risk"]["value"] == low
    assert second.payload["retrieval_risk"]["value"] == high
    assert first.payload["retrieval_risk"]["model"].startswith("retrieval-risk 1+")
    assert "risk" in answered.metrics.stage_ms


async def test_settings_without_a_fitted_model_give_none_and_say_why(
        embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = config(tmp_path, pipeline={"fusion": "rrf", "rrf_k": 7})
    async with AdvancedRAGPipeline(cfg, embedder=embedder) as rag:
        await rag.ingest(DOCS, tenant="bank-a")
        result = await rag.retrieve("Who approves loans?", tenant="bank-a")
        dense = await rag.retrieve("Who approves loans?", tenant="bank-a", search_type="dense")
        [event, _] = await rag.compliance.query_audit_logs(AuditEventType.RETRIEVAL)
    assert result.metrics.hallucination_risk is None
    assert "rrf_k=7" in (result.metrics.hallucination_risk_reason or "")
    assert event.payload is not None and event.payload["retrieval_risk"]["value"] is None
    assert dense.metrics.hallucination_risk is not None  # dense ignores fusion settings


async def test_disabled_risk_and_filters_that_leave_nothing(
        embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from advanced_rag.types import MetadataFilter

    async with AdvancedRAGPipeline(config(tmp_path / "a"), embedder=embedder) as rag:
        await rag.ingest(DOCS, tenant="bank-a")
        nothing = await rag.retrieve("loans", tenant="bank-a",
                                     filters=MetadataFilter(doc_ids=("no-such-doc",)))
    assert nothing.hits == () and nothing.metrics.hallucination_risk == 1.0
    off = config(tmp_path / "b", retrieval_risk={"enabled": False})
    async with AdvancedRAGPipeline(off, embedder=embedder) as rag:
        await rag.ingest(DOCS, tenant="bank-a")
        result = await rag.retrieve("Who approves loans?", tenant="bank-a")
    assert result.metrics.hallucination_risk is None
    assert result.metrics.hallucination_risk_reason == "retrieval_risk.enabled is false"


async def test_an_unreadable_model_file_is_a_config_error(
        embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = config(tmp_path, retrieval_risk={"model": str(tmp_path / "missing.json")})
    with pytest.raises(ConfigError, match="retrieval_risk.model"):
        async with AdvancedRAGPipeline(bad, embedder=embedder):
            pass
