"""Measure a faithfulness judge on labelled answers: loaders, metrics, one evaluation loop.

Data sets (``advanced-rag eval faithfulness --dataset …``):

* ``halueval-qa`` — ``<data>/faithfulness/halueval-qa/qa_data.jsonl``: each row's
  ``right_answer`` (faithful) and ``hallucinated_answer`` against its ``knowledge``;
* ``faithbench`` — ``<data>/faithfulness/faithbench/FaithBench.csv``: ``summary`` against
  ``source``; hallucinated = worst label Questionable or Unwanted (``group`` keeps the label);
* a path to your own JSONL: ``{"answer": "...", "contexts": ["..."] (or "context": "..."),
  "label": 0 | 1 | "faithful" | "hallucinated"}`` per line.

Reported: balanced accuracy and F1 (hallucinated class) at the judge's calibrated 0.5,
AUROC, expected calibration error (10 bins), latency per answer, and beside them the AUROC
of two trivial baselines — answer length, and the share of answer tokens absent from the
context — so a judge that only learned a shortcut is visible.

Example::

    items = load_dataset("faithbench", data_root=Path("../shared/data"))
    report = await evaluate(FeatureJudge(embedder), items)
    report.balanced_accuracy, report.auroc, report.length_auroc
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..scoring import calibration as cal
from ..scoring.base import Judge
from ..scoring.claims import split_claims

__all__ = ["FaithfulnessReport", "LabelledAnswer", "baseline_aurocs", "evaluate", "load_dataset"]

_TOKEN = re.compile(r"\w+")
_LABELS: dict[object, int] = {0: 0, 1: 1, "0": 0, "1": 1, "faithful": 0, "hallucinated": 1}


@dataclass(frozen=True, slots=True)
class LabelledAnswer:
    """An answer, the contexts it should rest on, and whether it is hallucinated (1) or not."""

    answer: str
    contexts: tuple[str, ...]
    label: int
    group: str | None = None


@dataclass(frozen=True, slots=True)
class FaithfulnessReport:
    n: int
    balanced_accuracy: float
    f1_hallucinated: float
    auroc: float
    ece: float
    latency_p50_ms: float
    latency_p95_ms: float
    length_auroc: float
    coverage_auroc: float


def _halueval_qa(path: Path) -> list[LabelledAnswer]:
    items = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            context = (row["knowledge"],)
            items.append(LabelledAnswer(row["right_answer"], context, 0))
            items.append(LabelledAnswer(row["hallucinated_answer"], context, 1))
    return items


def _faithbench(path: Path) -> list[LabelledAnswer]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [LabelledAnswer(r["summary"], (r["source"],),
                               int(r["worst-label"] in ("Questionable", "Unwanted")),
                               r["worst-label"]) for r in csv.DictReader(handle)]


def _jsonl(path: Path) -> list[LabelledAnswer]:
    items = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                contexts = row.get("contexts") or [row["context"]]
                label = _LABELS[row["label"]]
                items.append(LabelledAnswer(str(row["answer"]), tuple(map(str, contexts)), label))
            except (ValueError, KeyError, TypeError) as exc:
                raise InputError(f"{path}:{number}: expected answer, contexts (or context) and "
                                 f"label 0/1/faithful/hallucinated ({exc!r})") from None
    return items


def load_dataset(spec: str, *, data_root: Path) -> list[LabelledAnswer]:
    """``halueval-qa``, ``faithbench`` (under ``data_root/faithfulness``) or a JSONL path."""
    named: dict[str, tuple[Path, Callable[[Path], list[LabelledAnswer]]]] = {
        "halueval-qa": (data_root / "faithfulness" / "halueval-qa" / "qa_data.jsonl", _halueval_qa),
        "faithbench": (data_root / "faithfulness" / "faithbench" / "FaithBench.csv", _faithbench),
    }
    path, loader = named.get(spec, (Path(spec), _jsonl))
    if not path.is_file():
        raise InputError(f"no data set at {path} (use halueval-qa, faithbench or a JSONL file; "
                         "--data-root points at the folder holding faithfulness/)")
    items = loader(path)
    if len({i.label for i in items}) < 2:
        raise InputError(f"{path}: needs both faithful and hallucinated answers")
    return items


def baseline_aurocs(items: Sequence[LabelledAnswer]) -> tuple[float, float]:
    """AUROC of answer length (tokens) and of the share of answer tokens absent from the
    contexts, as detectors of the hallucinated class."""
    y = np.array([i.label for i in items])
    length, uncovered = [], []
    for item in items:
        tokens = [t.lower() for t in _TOKEN.findall(item.answer)]
        context = {t.lower() for c in item.contexts for t in _TOKEN.findall(c)}
        length.append(float(len(tokens)))
        uncovered.append(1 - sum(t in context for t in tokens) / len(tokens) if tokens else 0.0)
    return cal.auroc(y, np.array(length)), cal.auroc(y, np.array(uncovered))


async def evaluate(judge: Judge, items: Sequence[LabelledAnswer], *,
                   progress: Callable[[int], None] | None = None) -> FaithfulnessReport:
    """Judge every answer; an answer the judge cannot score counts as risk 0 (not hallucinated)."""
    risks, latencies = [], []
    for item in items:
        began = time.perf_counter()
        result = await judge.judge(split_claims(item.answer), list(item.contexts))
        latencies.append((time.perf_counter() - began) * 1000)
        risks.append(0.0 if result.hallucination_risk is None else result.hallucination_risk)
        if progress:
            progress(1)
    y, p = np.array([i.label for i in items]), np.array(risks)
    length, coverage = baseline_aurocs(items)
    return FaithfulnessReport(
        n=len(items), balanced_accuracy=cal.balanced_accuracy(y, p), f1_hallucinated=cal.f1(y, p),
        auroc=cal.auroc(y, p), ece=cal.ece(y, p),
        latency_p50_ms=float(np.percentile(latencies, 50)),
        latency_p95_ms=float(np.percentile(latencies, 95)), length_auroc=length,
        coverage_auroc=coverage)
