from __future__ import annotations

import pytest

import advanced_rag
from advanced_rag.telemetry import LatencyRecorder, StageTimer, summarise
from advanced_rag.types import (
    Document,
    Hit,
    HitScores,
    RetrievalMetrics,
    RetrievalResult,
    SearchType,
)

EXPECTED_ALL = {
    "AccessDeniedError", "AdvancedRAGPipeline", "AdvancedRagError", "BackendError", "Chunk",
    "Classification", "Principal", "ProviderError",
    "ConfigError", "Document", "DocumentError", "DocumentOutcome", "DocumentStatus",
    "EmbedderError", "FilterError", "Fusion", "Hit",
    "HitScores", "IngestFailure", "IngestReport", "InputError", "MetadataFilter",
    "MilvusIndexManager", "MissingDependencyError", "ModelIdentity", "PerformanceReport",
    "PipelineConfig", "RerankerError", "RetrievalMetrics", "RetrievalResult", "SearchType",
    "TenantError", "UnsupportedBackendError", "VectorStoreError", "__version__", "load_config",
}


def test_public_api_is_pinned() -> None:
    assert set(advanced_rag.__all__) == EXPECTED_ALL
    for name in advanced_rag.__all__:
        assert hasattr(advanced_rag, name)


def test_exception_tree() -> None:
    from advanced_rag import errors as e

    assert issubclass(e.UnsupportedBackendError, e.VectorStoreError)
    assert issubclass(e.VectorStoreError, e.BackendError)
    assert issubclass(e.DocumentError, e.InputError)
    for cls in (e.ConfigError, e.MissingDependencyError, e.InputError, e.BackendError):
        assert issubclass(cls, e.AdvancedRagError)
    err = e.UnsupportedBackendError("hybrid search (BM25)", "v2.3.5", "2.5")
    assert "v2.3.5" in str(err) and not err.retriable
    assert "pip install 'advanced-rag[cohere]'" in str(e.MissingDependencyError("cohere", "cohere"))


def _hit(**scores: float) -> Hit:
    return Hit("c", "d", 1, "t", {}, "s", "internal", HitScores(**scores))


def test_result_unpacks_like_the_seed() -> None:
    metrics = RetrievalMetrics({"embed": 5.0}, 50.0, 80.0)
    result = RetrievalResult("q", "t", SearchType.HYBRID, (_hit(fused=0.5),), metrics)
    hits, got = result
    assert hits[0].doc_id == "d" and got is metrics and got.sla_met
    assert not RetrievalMetrics({}, 81.0, 80.0).sla_met
    assert metrics["total_ms"] == 50.0
    with pytest.raises(KeyError):
        metrics["_private"]


def test_hit_score_precedence() -> None:
    assert _hit(dense=0.1, fused=0.2, rerank=0.3).score == 0.3
    assert _hit(dense=0.1, fused=0.2).score == 0.2
    assert _hit(bm25=7.0).score == 7.0


def test_content_hash_covers_text_metadata_source_class() -> None:
    base = Document("d", "text", {"a": 1}, "src")
    assert base.content_hash == Document("d", "text", {"a": 1}, "src").content_hash
    variants = [Document("d", "text!", {"a": 1}, "src"), Document("d", "text", {"a": 2}, "src"),
                Document("d", "text", {"a": 1}, "other"),
                Document("d", "text", {"a": 1}, "src", advanced_rag.Classification.PUBLIC)]
    assert len({base.content_hash, *(v.content_hash for v in variants)}) == 5


def test_percentiles_and_sla() -> None:
    recorder = LatencyRecorder(target_latency_ms=10.0)
    for ms in range(1, 101):
        recorder.record({"search": float(ms)}, float(ms))
    report = recorder.report()
    search = report["stage_latencies"]["search"]
    assert search["p50"] == pytest.approx(50.5) and search.p95 == pytest.approx(95.05)
    assert report["sla_compliance"]["compliance_rate"] == pytest.approx(0.10)
    assert LatencyRecorder(5.0).report().sla_compliance.compliance_rate is None
    with pytest.raises(ValueError):
        summarise([])


def test_stage_timer_accumulates() -> None:
    timer = StageTimer()
    with timer.stage("a"):
        pass
    with timer.stage("a"):
        pass
    assert set(timer.stage_ms) == {"a"} and timer.total_ms >= timer.stage_ms["a"]


def test_with_settings_validates_and_shares_backends() -> None:
    from advanced_rag import AdvancedRAGPipeline, ConfigError
    from advanced_rag.types import Fusion

    rag = AdvancedRAGPipeline()
    sibling = rag.with_settings(fusion="rrf", rrf_k=20)
    assert sibling.config.pipeline.fusion is Fusion.RRF and sibling.config.pipeline.rrf_k == 20
    assert rag.config.pipeline.fusion is Fusion.WEIGHTED  # the original is untouched
    with pytest.raises(ConfigError, match="pipeline.hybrid_alpha"):
        rag.with_settings(hybrid_alpha=1.5)
