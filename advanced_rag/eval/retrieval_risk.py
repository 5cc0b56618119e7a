"""Labelled rows for the retrieval-risk model, and how well a risk is calibrated.

A row is one (query, k): the features of the first ``k`` hits and the label 1 when none of
them belongs to a judged-relevant document. Shared by ``scripts/train_retrieval_risk.py``
(fitting, on training queries) and ``benchmarks/retrieval_risk.py`` (reporting, on test
queries through ``retrieve()``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..scoring import calibration as cal
from ..scoring.retrieval_risk import retrieval_features
from ..types import Hit

KS: tuple[int, ...] = (1, 3, 5, 10, 20)


@dataclass(frozen=True, slots=True)
class RiskRow:
    query_id: str
    k: int
    features: dict[str, float]
    label: int  # 1: no relevant document among the first k hits


def nothing_relevant(hits: Sequence[Hit], relevant: Mapping[str, int]) -> bool:
    """True when no hit belongs to a document judged relevant (grade > 0)."""
    return not any(relevant.get(hit.doc_id, 0) > 0 for hit in hits)


def risk_rows(query_id: str, query: str, hits: Sequence[Hit], relevant: Mapping[str, int],
              ks: Sequence[int] = KS) -> list[RiskRow]:
    """One row per ``k`` in ``ks`` (hits in rank order, at least ``max(ks)`` asked for).

    A retrieval with no hits has no features (the pipeline reports risk 1.0 by rule); it
    yields no row."""
    rows = []
    for k in ks:
        top = list(hits[:k])
        if top:
            rows.append(RiskRow(query_id, k, retrieval_features(
                query, [h.score for h in top], [h.text for h in top], k),
                int(nothing_relevant(top, relevant))))
    return rows


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    mean_predicted: float
    observed: float


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """How a predicted probability matches what happened."""

    n: int
    positives: int
    auroc: float
    ece: float
    brier: float
    bins: tuple[ReliabilityBin, ...]

    @property
    def base_rate(self) -> float:
        return self.positives / self.n if self.n else 0.0


def calibration_report(y: np.ndarray, p: np.ndarray, bins: int = 10) -> CalibrationReport:
    """AUROC, ECE (``bins`` equal-width bins), Brier score and the reliability bins."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    index = np.minimum((p * bins).astype(int), bins - 1)
    table = tuple(ReliabilityBin(b / bins, (b + 1) / bins, int((index == b).sum()),
                                 float(p[index == b].mean()), float(y[index == b].mean()))
                  for b in range(bins) if (index == b).any())
    return CalibrationReport(int(len(y)), int(y.sum()), cal.auroc(y, p), cal.ece(y, p, bins),
                             float(np.mean((p - y) ** 2)) if len(y) else 0.0, table)


def format_reliability(report: CalibrationReport) -> str:
    """A Markdown reliability table: per bin, how many, mean predicted, observed rate."""
    lines = ["| predicted risk | n | mean predicted | observed |", "|---|---|---|---|"]
    lines += [f"| {b.low:.1f}–{b.high:.1f} | {b.n} | {b.mean_predicted:.3f} | {b.observed:.3f} |"
              for b in report.bins]
    return "\n".join(lines)
