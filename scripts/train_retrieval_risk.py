"""Fit the retrieval-risk models; write advanced_rag/scoring/models/retrieval_risk_v1.json.

Judgments: SciFact *training* claims, whose cited evidence documents sit in
``queries.jsonl`` metadata and which are not in ``qrels/test.tsv`` (505 queries). The 300
test queries are never read here; ``benchmarks/retrieval_risk.py`` reports on them.

For each retrieval setting (hybrid weighted at the default alpha, hybrid RRF k=60, dense,
keyword) every training query is retrieved once through ``retrieve()`` with top_k=20, and
gives one row per k in 1, 3, 5, 10, 20: the features of its first k hits, label 1 when none
of them is from an evidence document. Model: L2 logistic regression on standardised
features, L2 strength chosen by 5-fold cross-validated log loss (folds by query, so a
query's rows never sit on both sides), then Platt scaling fitted on the cross-fitted
(out-of-fold) logits, so calibration is learned on predictions for queries the model had not
seen. The cross-fitted AUROC/ECE/Brier are stored in the file and printed.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/train_retrieval_risk.py      # ~10 min cold

Indexing runs in its own process first (Milvus Lite searches slowly in a process that has
just inserted rows); the index is the one ``benchmarks/retrieval_quality.py`` builds, and is
reused when present.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from advanced_rag import AdvancedRAGPipeline, SearchType  # noqa: E402
from advanced_rag.cli.evaluate import eval_config  # noqa: E402
from advanced_rag.config import PipelineConfig, validate_config  # noqa: E402
from advanced_rag.eval.beir import evidence_qrels, load_beir  # noqa: E402
from advanced_rag.eval.retrieval_risk import KS, RiskRow, calibration_report, risk_rows  # noqa: E402
from advanced_rag.eval.runner import index_corpus, retrieve_all  # noqa: E402
from advanced_rag.scoring import calibration as cal  # noqa: E402
from advanced_rag.scoring.retrieval_risk import RISK_FEATURES, signature  # noqa: E402

SCIFACT = REPO.parent / "shared" / "data" / "retrieval" / "scifact"
WORK = REPO / ".advanced-rag" / "bench"
MODEL_OUT = REPO / "advanced_rag" / "scoring" / "models" / "retrieval_risk_v1.json"
# (label, pipeline settings, search type): the settings a packaged model is fitted for.
VARIANTS: tuple[tuple[str, dict[str, Any], SearchType], ...] = (
    ("hybrid weighted (default)", {}, SearchType.HYBRID),
    ("hybrid RRF k=60", {"fusion": "rrf", "rrf_k": 60}, SearchType.HYBRID),
    ("dense", {}, SearchType.DENSE),
    ("keyword", {}, SearchType.KEYWORD),
)
L2_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
FOLDS = 5


def config() -> PipelineConfig:
    """The benchmark index, with the risk model off (this script is what writes it)."""
    base = validate_config({"milvus": {"uri": str(WORK / "quality.db")}, "data_dir": str(WORK),
                            "retrieval_risk": {"enabled": False}})
    return eval_config(base, SCIFACT)


async def index() -> None:
    dataset = load_beir(SCIFACT)
    async with AdvancedRAGPipeline.from_config(config()) as rag:
        report = await index_corpus(rag, dataset)
    print(f"index: {len(report.new)} new, {len(report.unchanged)} unchanged documents")


def fold_of(query_id: str) -> int:
    return int(hashlib.sha256(query_id.encode()).hexdigest()[:8], 16) % FOLDS


async def collect() -> dict[str, list[RiskRow]]:
    dataset = load_beir(SCIFACT)
    qrels = evidence_qrels(dataset)
    queries = {q: dataset.queries[q] for q in sorted(qrels)}
    out: dict[str, list[RiskRow]] = {}
    async with AdvancedRAGPipeline.from_config(config()) as rag:
        for label, settings, kind in VARIANTS:
            began = time.perf_counter()
            sibling = rag.with_settings(**settings) if settings else rag
            results = await retrieve_all(sibling, queries, search_type=kind, top_k=max(KS))
            rows = [row for q in queries
                    for row in risk_rows(q, queries[q], results[q].hits, qrels[q])]
            out[label] = rows
            print(f"  {label}: {len(queries)} queries, {len(rows)} rows, "
                  f"{sum(r.label for r in rows)} with nothing relevant "
                  f"({time.perf_counter() - began:.0f} s)", flush=True)
    return out


def fit(rows: list[RiskRow]) -> dict[str, Any]:
    x = np.array([[r.features[n] for n in RISK_FEATURES] for r in rows], dtype=np.float64)
    y = np.array([r.label for r in rows], dtype=np.float64)
    folds = np.array([fold_of(r.query_id) for r in rows])

    def out_of_fold(l2: float) -> np.ndarray:
        logits = np.zeros(len(y))
        for f in range(FOLDS):
            model = cal.fit_logistic(x[folds != f], y[folds != f], l2=l2)
            logits[folds == f] = model.logit(x[folds == f])
        return logits

    losses = {}
    for l2 in L2_GRID:
        logits = out_of_fold(l2)
        losses[l2] = float(np.mean(np.logaddexp(0, logits) - y * logits))
    l2 = min(L2_GRID, key=lambda v: (losses[v], v))
    oof = out_of_fold(l2)
    a, b = cal.fit_platt(oof, y)
    report = calibration_report(y, cal.platt(oof, a, b))
    model = cal.fit_logistic(x, y, l2=l2)
    return {"means": model.means, "scales": model.scales, "coefs": model.coefs,
            "intercept": model.intercept, "calibration": {"method": "platt", "a": a, "b": b},
            "training": {"queries": len({r.query_id for r in rows}), "rows": len(rows),
                         "positives": int(y.sum()), "l2": l2,
                         "cross_fitted": {"auroc": round(report.auroc, 4),
                                          "ece": round(report.ece, 4),
                                          "brier": round(report.brier, 4)}}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["all", "index", "fit"], default="all")
    parser.add_argument("--out", type=Path, default=MODEL_OUT)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.phase == "index":
        asyncio.run(index())
        return 0
    if args.phase == "all":
        subprocess.run([sys.executable, __file__, "--phase", "index"], check=True)
    rows = asyncio.run(collect())
    cfg = config()
    models = []
    print("\n| setting | queries | rows | nothing relevant | L2 | cross-fitted AUROC | ECE | Brier |\n"
          "|---|---|---|---|---|---|---|---|")
    for label, settings, kind in VARIANTS:
        fitted = fit(rows[label])
        pipeline = type(cfg.pipeline).model_validate({**cfg.pipeline.model_dump(), **settings})
        sibling = cfg.model_copy(update={"pipeline": pipeline})
        models.append({"label": label, "signature": signature(sibling, kind), **fitted})
        t = fitted["training"]
        cv = t["cross_fitted"]
        print(f"| {label} | {t['queries']} | {t['rows']} | {t['positives']} | {t['l2']} | "
              f"{cv['auroc']:.3f} | {cv['ece']:.3f} | {cv['brier']:.3f} |")
    spec = {"name": "retrieval-risk", "version": "1", "date": dt.date.today().isoformat(),
            "target": "P(no chunk of a relevant document among the top k hits)",
            "training_data": "SciFact training claims with evidence in queries.jsonl metadata, "
                             "not in qrels/test.tsv (scripts/train_retrieval_risk.py)",
            "ks": list(KS), "features": list(RISK_FEATURES), "models": models}
    args.out.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
