"""Logistic regression, probability calibration and the metrics used to judge them (numpy/scipy).

* :func:`fit_logistic` — L2-regularised logistic regression on standardised features
  (L-BFGS through :func:`scipy.optimize.minimize`), deterministic for the same data.
* :func:`fit_platt` / :func:`platt` — Platt scaling on the model's logit.
* :func:`fit_isotonic` / :func:`isotonic` — pooled-adjacent-violators, stored as breakpoints and
  evaluated by linear interpolation (monotone, clipped to the fitted range).
* :func:`auroc`, :func:`balanced_accuracy`, :func:`f1`, :func:`ece` — evaluation metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

__all__ = [
    "LogisticModel", "auroc", "balanced_accuracy", "ece", "f1", "fit_isotonic", "fit_logistic",
    "fit_platt", "isotonic", "platt", "sigmoid",
]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.asarray(np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)), dtype=np.float64)


@dataclass(frozen=True)
class LogisticModel:
    """``logit(x) = intercept + coefs · (x - means) / scales``."""

    means: tuple[float, ...]
    scales: tuple[float, ...]
    coefs: tuple[float, ...]
    intercept: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Logits of the rows of ``x`` (shape ``(n, d)``)."""
        z = (np.asarray(x, dtype=np.float64) - np.array(self.means)) / np.array(self.scales)
        return np.asarray(z @ np.array(self.coefs) + self.intercept, dtype=np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0,
                 sample_weight: np.ndarray | None = None,
                 signs: Sequence[int] | None = None) -> LogisticModel:
    """Fit L2-regularised logistic regression (penalty ``l2/2·|w|²``, intercept unpenalised).

    Features are standardised first (constant columns get scale 1). ``signs[j]`` = +1 / -1
    constrains coefficient ``j`` to be ≥ 0 / ≤ 0 (0: free; 2: fixed at 0, i.e. feature unused),
    a prior on each feature's direction."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales[scales < 1e-9] = 1.0
    z = (x - means) / scales
    total = weights.sum()

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        logits = z @ w + b
        # log(1 + e^l) - y·l, stable
        nll = np.logaddexp(0.0, logits) - y * logits
        value = float((weights * nll).sum() / total + 0.5 * l2 * (w @ w) / total)
        residual = weights * (sigmoid(logits) - y) / total
        grad = np.concatenate([z.T @ residual + l2 * w / total, [residual.sum()]])
        return value, grad

    options: dict[int, tuple[float | None, float | None]] = {
        2: (0.0, 0.0), 1: (0.0, None), -1: (None, 0.0), 0: (None, None)}
    bounds = [options[int(s)] for s in (signs if signs is not None else [0] * z.shape[1])]
    bounds.append((None, None))
    result = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 2000, "gtol": 1e-9})
    params = result.x
    return LogisticModel(tuple(float(v) for v in means), tuple(float(v) for v in scales),
                         tuple(float(v) for v in params[:-1]), float(params[-1]))


def fit_platt(logits: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Platt scaling ``p = sigmoid(a·logit + b)`` fitted by maximum likelihood; returns (a, b)."""
    model = fit_logistic(np.asarray(logits, dtype=np.float64).reshape(-1, 1), y, l2=1e-6)
    a = model.coefs[0] / model.scales[0]
    return float(a), float(model.intercept - a * model.means[0])


def platt(logits: np.ndarray, a: float, b: float) -> np.ndarray:
    """Apply Platt scaling."""
    return sigmoid(a * np.asarray(logits, dtype=np.float64) + b)


def fit_isotonic(scores: np.ndarray, y: np.ndarray) -> tuple[list[float], list[float]]:
    """Pooled-adjacent-violators fit of ``P(y=1 | score)``, non-decreasing in ``score``.

    Returns breakpoints ``(xs, ys)``: the mean score and fitted probability of each block."""
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")
    s = np.asarray(scores, dtype=np.float64)[order]
    t = np.asarray(y, dtype=np.float64)[order]
    blocks: list[list[float]] = []  # [sum_y, count, sum_score]
    for score, label in zip(s, t, strict=True):
        blocks.append([label, 1.0, score])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0] + last[0], blocks[-1][1] + last[1], blocks[-1][2] + last[2]]
    return [b[2] / b[1] for b in blocks], [b[0] / b[1] for b in blocks]


def isotonic(scores: np.ndarray, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    """Evaluate an isotonic fit (linear interpolation between breakpoints, flat outside)."""
    return np.asarray(np.interp(np.asarray(scores, dtype=np.float64), xs, ys), dtype=np.float64)


def auroc(y: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN-free: 0.5 when a class is missing."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def balanced_accuracy(y: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    """Mean of the recalls of both classes, predicting positive when ``prob >= threshold``."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(probs) >= threshold
    recalls: list[float] = []
    if y.any():
        recalls.append(float(pred[y].mean()))
    if (~y).any():
        recalls.append(float((~pred[~y]).mean()))
    return sum(recalls) / len(recalls) if recalls else 0.5


def f1(y: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of the positive class."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(probs) >= threshold
    tp = float((pred & y).sum())
    denominator = float(pred.sum() + y.sum())
    return 2 * tp / denominator if denominator else 0.0


def ece(y: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error with ``bins`` equal-width bins on [0, 1]."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    if len(p) == 0:
        return 0.0
    index = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() / len(p) * abs(p[mask].mean() - y[mask].mean())
    return float(total)
