"""Retrieval-time risk: features, settings signatures, the packaged model file, assessment and
the calibration report (pure functions; the pipeline path is in the integration tests)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from advanced_rag.config import validate_config
from advanced_rag.eval.retrieval_risk import calibration_report, nothing_relevant, risk_rows
from advanced_rag.scoring.retrieval_risk import (
    RISK_FEATURES,
    RiskModels,
    assess,
    load_risk_models,
    retrieval_features,
    signature,
)
from advanced_rag.types import Hit, HitScores, SearchType


def hit(doc: str, text: str, score: float) -> Hit:
    return Hit(chunk_id=f"{doc}#0", doc_id=doc, doc_version=1, text=text, metadata={},
               source="", classification="internal", scores=HitScores(fused=score))


def test_features_measure_query_coverage_and_score_shape() -> None:
    f = retrieval_features("loan approval committee", [0.9, 0.4],
                           ["The committee approves each loan.", "Unrelated text."], k=4)
    assert set(f) == set(RISK_FEATURES)
    assert f["top1_score"] == 0.9 and f["top1_margin"] == pytest.approx(0.5)
    assert f["mean_score"] == pytest.approx(0.65)
    # "approval" and "approves" share no stem here: 2 of 3 query words are in the best hit
    assert f["best_coverage"] == pytest.approx(2 / 3) and f["union_coverage"] == pytest.approx(2 / 3)
    assert f["hit_share"] == 0.5 and f["log_k"] == pytest.approx(math.log(4))


def test_features_of_a_stop_word_query_are_finite() -> None:
    f = retrieval_features("what is the", [1.0], ["anything"], k=1)
    assert all(math.isfinite(v) for v in f.values()) and f["best_coverage"] == 0.0


def test_features_refuse_mismatched_inputs() -> None:
    with pytest.raises(ValueError):
        retrieval_features("q", [], [], k=1)
    with pytest.raises(ValueError):
        retrieval_features("q", [1.0], ["a", "b"], k=2)


def test_signature_names_only_the_settings_the_scores_depend_on() -> None:
    config = validate_config({})
    hybrid = signature(config, SearchType.HYBRID)
    assert hybrid["fusion"] == "weighted" and hybrid["hybrid_alpha"] == 0.2 and "rrf_k" not in hybrid
    assert "bm25" not in signature(config, SearchType.DENSE)
    assert "embedder" not in signature(config, SearchType.KEYWORD)
    rrf = signature(validate_config({"pipeline": {"fusion": "rrf"}}), "hybrid")
    assert rrf["rrf_k"] == 60 and "hybrid_alpha" not in rrf
    reranked = validate_config({"reranker": {"kind": "cross-encoder", "model": "some/ce"}})
    assert signature(reranked, "dense")["reranker"] == "some/ce"


def test_packaged_models_cover_the_default_settings_and_are_fitted() -> None:
    models = load_risk_models()
    default = models.for_signature(signature(validate_config({}), SearchType.HYBRID))
    assert default is not None
    for search_type in SearchType:
        assert models.for_signature(signature(validate_config({}), search_type)) is not None
    assert models.identity.sha256 and models.version.startswith("1+")
    assert any(abs(c) > 1e-6 for c in default.logistic.coefs)


def test_assess_is_a_probability_and_falls_back_with_a_reason() -> None:
    models = load_risk_models()
    config = validate_config({})
    hits = [hit("a", "Loans are approved by the credit committee.", 0.8)]
    result = assess(models, signature(config, "hybrid"), "who approves loans", hits, k=5)
    assert result.risk is not None and 0.0 <= result.risk <= 1.0 and result.reason is None
    assert result.model and result.model.startswith("retrieval-risk 1+")
    empty = assess(models, signature(config, "hybrid"), "who approves loans", [], k=5)
    assert empty.risk == 1.0 and "no chunk" in (empty.reason or "")
    other = signature(validate_config({"pipeline": {"hybrid_alpha": 0.55}}), "hybrid")
    unfitted = assess(models, other, "who approves loans", hits, k=5)
    assert unfitted.risk is None and "hybrid_alpha=0.55" in (unfitted.reason or "")


def test_risk_falls_as_the_evidence_gets_better() -> None:
    models = load_risk_models()
    sig = signature(validate_config({}), "hybrid")
    query = "Which committee approves loans above 250,000 euros?"
    weak = assess(models, sig, query, [hit("a", "The canteen opens at noon.", 0.05)], k=5)
    strong = assess(models, sig, query, [
        hit("a", "Loans above 250,000 euros are approved by the credit committee.", 0.9)], k=5)
    assert weak.risk is not None and strong.risk is not None and strong.risk < weak.risk


def test_a_model_file_with_other_features_is_refused() -> None:
    spec = {"name": "retrieval-risk", "version": "9", "features": ["top1_score"], "models": []}
    with pytest.raises(ValueError, match="differ"):
        RiskModels.from_json(json.dumps(spec).encode())


def test_rows_label_whether_anything_relevant_is_in_the_top_k() -> None:
    hits = [hit("x", "one", 0.9), hit("rel", "two", 0.5), hit("y", "three", 0.1)]
    rows = risk_rows("q1", "query", hits, {"rel": 1}, ks=(1, 2, 5))
    assert [(r.k, r.label) for r in rows] == [(1, 1), (2, 0), (5, 0)]
    assert rows[2].features["hit_share"] == pytest.approx(3 / 5)
    assert nothing_relevant(hits, {"rel": 0}) and risk_rows("q", "query", [], {"x": 1}) == []


def test_calibration_report_bins_and_scores() -> None:
    y = np.array([0, 0, 1, 1])
    report = calibration_report(y, np.array([0.05, 0.15, 0.85, 0.95]))
    assert report.n == 4 and report.positives == 2 and report.auroc == 1.0
    assert report.brier == pytest.approx((0.05**2 + 0.15**2 + 0.15**2 + 0.05**2) / 4)
    assert [b.n for b in report.bins] == [1, 1, 1, 1] and report.bins[0].observed == 0.0
    perfect = calibration_report(np.array([1, 0]), np.array([1.0, 0.0]))
    assert perfect.ece == 0.0 and perfect.brier == 0.0


@pytest.mark.parametrize("query,text", [
    ("Who approves loans above 250,000 euros?", "Loans above 250,000 EUROS are approved by the "
                                                "credit committee; approvals are logged."),
    ("What is TB's treatment?", "The TB patient's treatment can't wait; treated early."),
    ("Doesn’t insulin lower glucose?", "Insulin lowers blood glucose; it doesn't raise it."),
    ("the and of", "the and of"),
    ("naïve studies", "Naïve studying of studies"),
])
def test_fast_coverage_matches_the_full_tokenisation(query: str, text: str) -> None:
    from advanced_rag.scoring.retrieval_risk import _candidates, _matched, _terms

    terms = _terms(query)
    assert _matched(terms, _candidates(terms), text) == terms & _terms(text)
