"""Retrieval-time hallucination risk: the calibrated probability that the top-k chunks a
retrieval returned hold *nothing relevant* to the query, known before any answer is written.

An answer grounded in irrelevant context is either a refusal or a hallucination, so this is
the risk the seed's ``metrics.hallucination_risk`` promised, made measurable: a logistic
model over :data:`RISK_FEATURES` (pure functions of the query and the ranked hits), fitted by
``scripts/train_retrieval_risk.py`` on SciFact *training* claims with judged evidence (never
the reported test queries); its calibration on held-out queries is in docs/benchmarks.md.

Scores mean different things under different retrieval settings (cosine, raw BM25, weighted
or RRF fusion, a cross-encoder's logits), so each fitted model carries the
:func:`signature` of the settings it was fitted under. A retrieval whose settings match no
fitted model gets ``risk=None`` and a reason, never a number from the wrong scale; users fit
their own with the training script on their own judged queries.

Example::

    models = load_risk_models()
    assessment = assess(models, signature(config, SearchType.HYBRID), query, hits, k=20)
    assessment.risk, assessment.reason
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..types import ModelIdentity
from .calibration import LogisticModel, platt
from .features import STOPWORDS, content_words, stem_word, word_tokens

if TYPE_CHECKING:
    from ..config import PipelineConfig
    from ..types import Hit, SearchType

__all__ = [
    "RISK_FEATURES", "RiskAssessment", "RiskModel", "RiskModels", "assess", "load_risk_models",
    "retrieval_features", "signature",
]

MODEL_RESOURCE = "retrieval_risk_v1.json"
RISK_FEATURES: tuple[str, ...] = (
    "top1_score", "mean_score", "top1_margin", "best_coverage", "union_coverage",
    "log_k", "log_query_terms", "hit_share",
)


def _terms(text: str) -> set[str]:
    return set(content_words(word_tokens(text)))


def _candidates(query_terms: set[str]) -> re.Pattern[str] | None:
    """Words (of lower-cased text, as :data:`~.features.WORD` splits it) that start with a
    query term's first three characters: a word's stem keeps its first three characters
    (stemming strips suffixes only from words of more than 3 + suffix characters), so no other
    word can stem to a query term."""
    if not query_terms:
        return None
    prefixes = "|".join(sorted({re.escape(term[:3]) for term in query_terms}))
    return re.compile(rf"(?<![a-z0-9])(?:{prefixes})[a-z0-9]*(?:['\u2019][a-z]+)?")


def _matched(query_terms: set[str], candidates: re.Pattern[str] | None, text: str) -> set[str]:
    """``query_terms & _terms(text)``, stemming only the candidate words (this runs on every
    retrieval, over abstract-length hits)."""
    found: set[str] = set()
    if candidates is None:
        return found
    for raw in set(candidates.findall(text.lower())):
        word = raw.replace("\u2019", "'")
        word = word[:-3] if word.endswith("n't") else word.split("'")[0]
        if word not in STOPWORDS:
            stem = stem_word(word)
            if stem in query_terms:
                found.add(stem)
    return found


def retrieval_features(query: str, scores: Sequence[float], texts: Sequence[str],
                       k: int) -> dict[str, float]:
    """Features of one retrieval: ``scores`` and ``texts`` of the returned hits in rank order
    (at most ``k``; fewer when filters left fewer), ``k`` the number asked for.

    * ``top1_score``, ``mean_score``: the final ranking's score of the first hit, mean of all;
    * ``top1_margin``: first minus second score (0 with one hit);
    * ``best_coverage``: the largest share of the query's content words found in one hit;
    * ``union_coverage``: the share found in any hit;
    * ``log_k``, ``log_query_terms``: how many hits were asked for; how many content words
      the query has (short queries are matched by chance more easily);
    * ``hit_share``: hits returned / ``k``.
    """
    if not scores or len(scores) != len(texts):
        raise ValueError("retrieval_features needs one text per score and at least one hit")
    query_terms = _terms(query)
    candidates = _candidates(query_terms)
    hit_terms = [_matched(query_terms, candidates, text) for text in texts]
    denominator = max(len(query_terms), 1)
    best = max(len(terms) for terms in hit_terms) / denominator
    union = len(set().union(*hit_terms)) / denominator
    return {
        "top1_score": float(scores[0]),
        "mean_score": float(np.mean(scores)),
        "top1_margin": float(scores[0] - scores[1]) if len(scores) > 1 else 0.0,
        "best_coverage": best if query_terms else 0.0,
        "union_coverage": union if query_terms else 0.0,
        "log_k": math.log(k),
        "log_query_terms": math.log1p(len(query_terms)),
        "hit_share": len(scores) / k,
    }


def signature(config: PipelineConfig, search_type: SearchType | str) -> dict[str, Any]:
    """The settings a retrieval's scores depend on; a fitted model applies only to its own."""
    kind = str(search_type)
    out: dict[str, Any] = {"search_type": kind}
    if kind != "keyword":
        out["embedder"] = config.embedder.model
    if kind != "dense":
        bm25 = config.milvus.bm25
        out["bm25"] = {"analyzer": bm25.analyzer, "k1": bm25.k1, "b": bm25.b}
    if kind == "hybrid":
        fusion = str(config.pipeline.fusion)
        out["fusion"] = fusion
        if fusion == "weighted":
            out["hybrid_alpha"] = config.pipeline.hybrid_alpha
        else:
            out["rrf_k"] = config.pipeline.rrf_k
    out["reranker"] = config.reranker.model if config.reranker.kind != "none" else None
    return out


def _describe(sig: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sig.items())


@dataclass(frozen=True)
class RiskModel:
    """One fitted model: its settings signature, logistic model and Platt calibration."""

    signature: Mapping[str, Any]
    logistic: LogisticModel
    platt_a: float
    platt_b: float

    def probability(self, features: Mapping[str, float]) -> float:
        x = np.array([[features[name] for name in RISK_FEATURES]], dtype=np.float64)
        return float(np.clip(platt(self.logistic.logit(x), self.platt_a, self.platt_b)[0], 0, 1))


@dataclass(frozen=True)
class RiskModels:
    """The models of one JSON file, with its name and version (``version+sha256[:8]``)."""

    name: str
    version: str
    sha256: str
    models: tuple[RiskModel, ...]

    @property
    def identity(self) -> ModelIdentity:
        """Name and SHA-256 of the fitted file, for the ``model_loaded`` audit event."""
        return ModelIdentity(f"{self.name} {self.version}", self.sha256)

    def for_signature(self, sig: Mapping[str, Any]) -> RiskModel | None:
        for model in self.models:
            if dict(model.signature) == dict(sig):
                return model
        return None

    @classmethod
    def from_json(cls, data: bytes) -> RiskModels:
        spec = json.loads(data)
        if tuple(spec["features"]) != RISK_FEATURES:
            raise ValueError(f"model features {spec['features']} differ from the code's "
                             f"{RISK_FEATURES}")
        models = tuple(RiskModel(
            signature=m["signature"],
            logistic=LogisticModel(tuple(m["means"]), tuple(m["scales"]), tuple(m["coefs"]),
                                   float(m["intercept"])),
            platt_a=float(m["calibration"]["a"]), platt_b=float(m["calibration"]["b"]))
            for m in spec["models"])
        digest = hashlib.sha256(data).hexdigest()
        return cls(str(spec["name"]), f"{spec['version']}+{digest[:8]}", digest, models)


def load_risk_models(path: str | Path | None = None) -> RiskModels:
    """Load a fitted file (the packaged ``retrieval_risk_v1.json`` by default)."""
    if path is None:
        data = resources.files("advanced_rag.scoring").joinpath("models", MODEL_RESOURCE).read_bytes()
    else:
        data = Path(path).read_bytes()
    return RiskModels.from_json(data)


@dataclass(frozen=True, slots=True)
class RiskAssessment:
    """``risk`` = P(no relevant chunk among the hits), or ``None`` with the ``reason``."""

    risk: float | None
    reason: str | None
    model: str | None


def assess(models: RiskModels, sig: Mapping[str, Any], query: str, hits: Sequence[Hit],
           k: int) -> RiskAssessment:
    """The risk of one retrieval's ``hits`` (rank order) for ``query`` with ``k`` asked for."""
    name = f"{models.name} {models.version}"
    if not hits:
        return RiskAssessment(1.0, "no chunk was retrieved", name)
    model = models.for_signature(sig)
    if model is None:
        return RiskAssessment(None, f"no retrieval-risk model fitted for {_describe(sig)}; "
                                    "fit one with scripts/train_retrieval_risk.py", name)
    features = retrieval_features(query, [h.score for h in hits], [h.text for h in hits], k)
    return RiskAssessment(model.probability(features), None, name)
