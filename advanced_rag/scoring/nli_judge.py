"""NLIJudge: claims checked by a natural-language-inference cross-encoder.

Any sentence-transformers ``CrossEncoder`` NLI model (e.g. ``cross-encoder/nli-deberta-v3-base``)
or Vectara HHEM works, by local path or hub id. Each claim is the hypothesis; each context is
split into windows of consecutive sentences (the premise) so long passages fit the model;
a claim's entailment and contradiction probabilities are the maxima over windows, and the
evidence is the window that entails it best (or contradicts it, for a contradicted claim).

No pretrained NLI model installs offline from PyPI, so the offline default is FeatureJudge;
this judge is the recommended one for users who have such a model. Its probabilities are the
model's softmax, *not* calibrated on this project's data: ``hallucination_risk`` is
``1 - min(support)`` over claims, a conservative summary, and the README says so.

Example::

    judge = NLIJudge("/models/nli-deberta-v3-base",
                     labels={"contradiction": 0, "entailment": 1, "neutral": 2})
    result = await judge.judge(split_claims(answer), contexts)
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..embed.sentence_transformers import load_sentence_model, weights_sha256
from ..errors import ConfigError, RerankerError
from ..types import ModelIdentity
from .base import Claim, ClaimJudgement, Evidence, JudgeResult, Verdict
from .claims import split_sentences

__all__ = ["DEFAULT_LABELS", "NLIJudge", "windows"]

DEFAULT_LABELS: Mapping[str, int] = {"contradiction": 0, "entailment": 1, "neutral": 2}
"""Label order of the sentence-transformers NLI cross-encoders (check your model's config)."""


def windows(text: str, *, sentences: int = 3, stride: int = 2) -> list[tuple[int, int]]:
    """Spans of ``sentences`` consecutive sentences of ``text``, advancing by ``stride``."""
    spans = split_sentences(text)
    if not spans:
        return []
    if len(spans) <= sentences:
        return [(spans[0][0], spans[-1][1])]
    out = []
    for first in range(0, len(spans) - sentences + stride, stride):
        chunk = spans[first:first + sentences]
        if chunk:
            out.append((chunk[0][0], chunk[-1][1]))
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


class NLIJudge:
    """Judges claims with an NLI cross-encoder (entailment / contradiction / neutral)."""

    def __init__(self, model: str, *, labels: Mapping[str, int] | None = None,
                 max_length: int = 512, batch_size: int = 16, device: str = "cpu",
                 window_sentences: int = 3) -> None:
        labels = dict(labels or DEFAULT_LABELS)
        if set(labels) != {"entailment", "contradiction", "neutral"} or \
                sorted(labels.values()) != [0, 1, 2]:
            raise ConfigError("judge.labels must map entailment, contradiction and neutral to "
                              "0, 1 and 2 (as in the model's config)", key="judge.labels")
        try:
            self._model, path = load_sentence_model(model, device=device, cross_encoder=True,
                                                    max_length=max_length)
        except Exception as exc:
            raise RerankerError(f"cannot load NLI model {model!r}: {exc}") from exc
        self._labels = labels
        self._batch_size = batch_size
        self._window = window_sentences
        self._name = model
        sha = weights_sha256(path) if Path(path).is_dir() else "unknown"
        self._identity = ModelIdentity(model, sha)
        self._version = f"nli:{sha[:12]}:" + hashlib.sha256(
            repr(sorted(labels.items())).encode()).hexdigest()[:8]
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nli-judge")

    @property
    def name(self) -> str:
        return f"nli:{self._name}"

    @property
    def version(self) -> str:
        return self._version

    @property
    def identity(self) -> ModelIdentity:
        """Model name and SHA-256 of its weight files (recorded in the audit log)."""
        return self._identity

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _probabilities(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        logits: Any = self._model.predict(pairs, batch_size=self._batch_size,
                                          show_progress_bar=False, convert_to_numpy=True,
                                          apply_softmax=False)
        values = np.asarray(logits, dtype=np.float64).reshape(len(pairs), -1)
        if values.shape[1] != 3:
            raise RerankerError(f"NLI model {self._name!r} returned {values.shape[1]} labels, "
                                "expected 3 (entailment, contradiction, neutral)")
        return _softmax(values)

    async def judge(self, claims: Sequence[Claim], contexts: Sequence[str]) -> JudgeResult:
        spans = [(ci, s, e) for ci, text in enumerate(contexts)
                 for s, e in windows(text, sentences=self._window)]
        if not claims or not spans:
            return JudgeResult((), None)
        pairs = [(contexts[ci][s:e], claim.text) for claim in claims for ci, s, e in spans]
        loop = asyncio.get_running_loop()
        probs = await loop.run_in_executor(self._executor, self._probabilities, pairs)
        probs = probs.reshape(len(claims), len(spans), 3)
        ent, con = self._labels["entailment"], self._labels["contradiction"]
        judged = []
        for i, claim in enumerate(claims):
            entail, contra = probs[i, :, ent], probs[i, :, con]
            best_e, best_c = int(entail.argmax()), int(contra.argmax())
            support, contradiction = float(entail[best_e]), float(contra[best_c])
            if support >= 0.5:
                verdict, where = Verdict.SUPPORTED, best_e
            elif contradiction >= 0.5:
                verdict, where = Verdict.CONTRADICTED, best_c
            else:
                verdict, where = Verdict.UNSUPPORTED, best_e
            ci, s, e = spans[where]
            judged.append(ClaimJudgement(
                claim, support, verdict, Evidence(ci, s, e, contexts[ci][s:e]),
                {"entailment": support, "contradiction": contradiction}))
        risk = 1.0 - min(j.support for j in judged)
        return JudgeResult(tuple(judged), risk)
