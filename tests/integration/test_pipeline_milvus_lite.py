"""Ingest → retrieve → re-ingest → update → delete on a real Milvus Lite with the packaged
MiniLM embedder."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from advanced_rag import (
    AdvancedRAGPipeline,
    Document,
    InputError,
    MetadataFilter,
    SearchType,
    TenantError,
)

pytestmark = pytest.mark.integration

KYC = Document("kyc", "Enhanced due diligence applies to customers with a risk score of 70 or "
               "above. The compliance officer approves every enhanced due diligence file.",
               {"owner": "compliance", "year": 2024}, "handbook")
COMPLAINTS = Document("complaints", "Complaints must be acknowledged within 3 business days and "
                      "resolved within 15 business days.", {"owner": "service", "year": 2023},
                      "customer-notice", "public")
CREDIT = Document("credit", "A regional credit manager may approve loans up to 250,000 euros. "
                  "Larger loans go to the credit committee.", {"owner": "risk", "year": 2024},
                  "handbook", "confidential")


@pytest.mark.parametrize("search_type", list(SearchType))
async def test_each_search_type_finds_the_right_document(rag: AdvancedRAGPipeline,
                                                         search_type: SearchType) -> None:
    report = await rag.ingest([KYC, COMPLAINTS, CREDIT], tenant="bank-a")
    assert sorted(report.new) == ["complaints", "credit", "kyc"] and report.ok
    questions = {
        "complaints": "How many business days to acknowledge complaints?",
        "kyc": "risk score for enhanced due diligence",
        "credit": "who approves loans above 250,000 euros",
    }
    for expected, question in questions.items():
        hits, metrics = await rag.retrieve(question, tenant="bank-a", search_type=search_type)
        assert hits[0].doc_id == expected, (search_type, question, [h.doc_id for h in hits])
        assert metrics.total_ms > 0 and "search" in metrics.stage_ms
        first = hits[0].scores
        if search_type is SearchType.DENSE:
            assert first.dense is not None and -1.0 <= first.dense <= 1.0
        elif search_type is SearchType.KEYWORD:
            assert first.bm25 is not None and first.bm25 > 0  # normalised: positive on Lite
        else:
            assert first.fused is not None
    report = rag.get_performance_report()
    assert report["stage_latencies"]["search"]["count"] == 3
    assert 0.0 <= report["sla_compliance"]["compliance_rate"] <= 1.0


async def test_incremental_ingest(rag: AdvancedRAGPipeline) -> None:
    first = await rag.ingest([KYC, COMPLAINTS], tenant="t1")
    written = first.chunks_written
    assert written >= 2
    again = await rag.ingest([KYC, COMPLAINTS], tenant="t1")
    assert again.unchanged == ("kyc", "complaints") and again.chunks_written == 0
    assert await rag.store.count("t1") == written

    changed = Document("kyc", "Enhanced due diligence now applies from a risk score of 60.",
                       KYC.metadata, KYC.source)
    update = await rag.ingest([changed], tenant="t1")
    assert update.updated == ("kyc",) and update.chunks_deleted >= 1
    hits, _ = await rag.retrieve("enhanced due diligence risk score", tenant="t1", top_k=10)
    kyc_hits = [h for h in hits if h.doc_id == "kyc"]
    assert kyc_hits and all(h.doc_version == 2 for h in kyc_hits)
    assert all("70" not in h.text for h in kyc_hits)

    deleted = await rag.delete_documents(["kyc"], tenant="t1")
    assert deleted >= 1
    hits, _ = await rag.retrieve("enhanced due diligence", tenant="t1", top_k=10)
    assert {h.doc_id for h in hits} == {"complaints"}


async def test_tenants_never_see_each_other(rag: AdvancedRAGPipeline) -> None:
    await rag.ingest([KYC], tenant="bank-a")
    await rag.ingest([COMPLAINTS], tenant="bank-b")
    for search_type in SearchType:
        a, _ = await rag.retrieve("complaints acknowledged business days", tenant="bank-a",
                                  search_type=search_type, top_k=50)
        b, _ = await rag.retrieve("enhanced due diligence", tenant="bank-b",
                                  search_type=search_type, top_k=50)
        assert {h.doc_id for h in a} <= {"kyc"} and {h.doc_id for h in b} <= {"complaints"}
    # the same document id in two tenants is two documents
    await rag.ingest([KYC], tenant="bank-b")
    await rag.delete_documents(["kyc"], tenant="bank-a")
    assert await rag.store.count("bank-b") >= 2
    assert await rag.store.count("bank-a") == 0


async def test_filters_on_real_milvus(rag: AdvancedRAGPipeline) -> None:
    await rag.ingest([KYC, COMPLAINTS, CREDIT], tenant="f")
    q = "who approves what"
    only_public = MetadataFilter(classifications=("public",))
    hits, _ = await rag.retrieve(q, tenant="f", filters=only_public, top_k=10)
    assert {h.doc_id for h in hits} == {"complaints"}
    hits, _ = await rag.retrieve(q, tenant="f", top_k=10,
                                 filters=MetadataFilter(metadata_equals={"owner": "risk"}))
    assert {h.doc_id for h in hits} == {"credit"}
    hits, _ = await rag.retrieve(q, tenant="f", top_k=10,
                                 filters=MetadataFilter(metadata_equals={"year": 2024},
                                                        sources=("handbook",)))
    assert {h.doc_id for h in hits} == {"kyc", "credit"}
    future = datetime.now(UTC) + timedelta(days=1)
    hits, _ = await rag.retrieve(q, tenant="f", top_k=10,
                                 filters=MetadataFilter(created_after=future))
    assert hits == []
    # an injection attempt is a literal that matches nothing, never a wider search
    attack = MetadataFilter(sources=('x" or tenant_id != "f',))
    for search_type in SearchType:
        hits, _ = await rag.retrieve(q, tenant="f", filters=attack, search_type=search_type)
        assert hits == []


async def test_bad_documents_are_reported_and_the_rest_ingested(rag: AdvancedRAGPipeline) -> None:
    rag_limit = rag.config.ingest.max_document_chars
    bad = [
        Document("empty", "   "),
        Document("bytes", b"caf\xe9"),  # type: ignore[arg-type]
        Document("huge", "x " * (rag_limit // 2 + 1)),
        Document("", "no id"),
        Document("kyc", "duplicate id in one batch"),
        Document("badclass", "text", classification="secret"),  # type: ignore[arg-type]
    ]
    report = await rag.ingest([KYC, *bad, COMPLAINTS], tenant="t")
    assert set(report.new) == {"kyc", "complaints"}
    reasons = {f.doc_id: f.reason for f in report.failed}
    assert set(reasons) == {"empty", "bytes", "huge", "", "kyc", "badclass"}
    assert "empty" in reasons["empty"] and "UTF-8" in reasons["bytes"]
    assert "ingest.max_document_chars" in reasons["huge"] and "twice" in reasons["kyc"]
    good_bytes = await rag.ingest([Document("utf8", "Café policy".encode())], tenant="t")  # type: ignore[arg-type]
    assert good_bytes.new == ("utf8",)


async def test_input_errors(rag: AdvancedRAGPipeline) -> None:
    with pytest.raises(TenantError):
        await rag.ingest([KYC], tenant='x" or 1==1')
    with pytest.raises(InputError):
        await rag.retrieve("   ", tenant="t")
    with pytest.raises(InputError):
        await rag.retrieve("q" * 10_000, tenant="t")
    no_default = rag.with_settings(default_tenant=None)
    with pytest.raises(TenantError, match="required"):
        await no_default.retrieve("anything")


async def test_seed_call_shape_uses_the_default_tenant(rag: AdvancedRAGPipeline) -> None:
    await rag.ingest([COMPLAINTS])
    hits, metrics = await rag.retrieve(query="complaint acknowledgement")
    assert hits and hits[0].doc_id == "complaints" and metrics["sla_met"] in (True, False)


async def test_reopen_in_a_new_process_loads_the_collection(rag: AdvancedRAGPipeline,
                                                            milvus_uri: str) -> None:
    await rag.ingest([KYC, COMPLAINTS], tenant="persist")
    await rag.close()
    script = textwrap.dedent(f"""
        import asyncio, json
        from advanced_rag import AdvancedRAGPipeline
        from advanced_rag.config import validate_config
        async def main():
            config = validate_config({{"milvus": {{"uri": {milvus_uri!r}}},
                                      "data_dir": {str(Path(milvus_uri).parent)!r}}})
            async with AdvancedRAGPipeline.from_config(config) as rag:
                hits, _ = await rag.retrieve("complaints acknowledged", tenant="persist")
                print(json.dumps([h.doc_id for h in hits]))
        asyncio.run(main())
    """)
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script],
                                  capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])[0] == "complaints"


async def test_fusion_settings_reach_milvus(rag: AdvancedRAGPipeline) -> None:
    """RRF with k gives the top document 2/(k+1) when both signals rank it first."""
    await rag.ingest([KYC, COMPLAINTS, CREDIT], tenant="fu")
    question = "How many business days to acknowledge complaints?"
    for k in (1, 60):
        hits, _ = await rag.with_settings(fusion="rrf", rrf_k=k).retrieve(question, tenant="fu")
        assert hits[0].doc_id == "complaints"
        assert hits[0].scores.fused == pytest.approx(2 / (k + 1), rel=1e-4)
    weighted, _ = await rag.with_settings(fusion="weighted", hybrid_alpha=1.0).retrieve(
        question, tenant="fu")
    dense, _ = await rag.retrieve(question, tenant="fu", search_type=SearchType.DENSE)
    assert [h.chunk_id for h in weighted] == [h.chunk_id for h in dense]
