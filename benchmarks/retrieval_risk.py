"""Calibration of the retrieval-time risk (``metrics.hallucination_risk`` after ``retrieve()``)
on the 300 SciFact test queries, which the training script never reads.

    python benchmarks/retrieval_risk.py        # ~8 min with the index built, ~15 min cold

For every setting a packaged model was fitted for, and top_k 5 and 20, each test query goes
through ``retrieve()``; the label is 1 when no returned chunk is from a relevant document.
Printed beside the model: AUROC of two one-number baselines, the top hit's score (low =
risky) and the seed's score variance. Last, the 50 MS MARCO sample queries are asked of the
SciFact index (web questions against scientific abstracts, unjudged there): their mean risk.
Writes the ``retrieval_risk`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import DATA, REPO, environment_line, load_script, write_section  # noqa: E402

from advanced_rag import AdvancedRAGPipeline  # noqa: E402
from advanced_rag.eval.beir import load_beir  # noqa: E402
from advanced_rag.eval.retrieval_risk import (  # noqa: E402
    calibration_report,
    format_reliability,
    nothing_relevant,
)
from advanced_rag.eval.runner import retrieve_all  # noqa: E402
from advanced_rag.scoring import calibration as cal  # noqa: E402
from advanced_rag.scoring.retrieval_risk import load_risk_models  # noqa: E402

TOP_KS = (5, 20)


async def measure(trainer: ModuleType) -> str:
    dataset = load_beir(trainer.SCIFACT)
    queries = {q: dataset.queries[q] for q in sorted(dataset.qrels)}
    marco = load_beir(DATA / "retrieval" / "msmarco-sample").queries
    config = trainer.config()
    config = config.model_copy(update={"retrieval_risk": config.retrieval_risk.model_copy(
        update={"enabled": True})})
    models = load_risk_models()
    rows = ["| setting | top_k | queries | nothing relevant | mean risk | AUROC | ECE | Brier | "
            "AUROC top-1 score | AUROC score variance |", "|---|---|---|---|---|---|---|---|---|---|"]
    reliability = ""
    out_of_corpus = []
    async with AdvancedRAGPipeline.from_config(config) as rag:
        for label, settings, kind in trainer.VARIANTS:
            sibling = rag.with_settings(**settings) if settings else rag
            for k in TOP_KS:
                results = await retrieve_all(sibling, queries, search_type=kind, top_k=k)
                y = np.array([nothing_relevant(results[q].hits, dataset.qrels[q]) for q in queries],
                             dtype=np.float64)
                risk = np.array([results[q].metrics.hallucination_risk for q in queries],
                                dtype=np.float64)
                top1 = np.array([results[q].hits[0].score for q in queries])
                spread = np.array([np.var([h.score for h in results[q].hits]) for q in queries])
                report = calibration_report(y, risk)
                rows.append(f"| {label} | {k} | {report.n} | {report.positives} "
                            f"({report.base_rate:.1%}) | {risk.mean():.3f} | {report.auroc:.3f} | "
                            f"{report.ece:.3f} | {report.brier:.3f} | {cal.auroc(y, -top1):.3f} | "
                            f"{cal.auroc(y, -spread):.3f} |")
                print(rows[-1], flush=True)
                if not settings and kind == trainer.VARIANTS[0][2] and k == max(TOP_KS):
                    reliability = format_reliability(report)
            results = await retrieve_all(sibling, marco, search_type=kind, top_k=max(TOP_KS))
            mean = np.mean([r.metrics.hallucination_risk for r in results.values()])
            out_of_corpus.append(f"{label} {mean:.3f}")
    return (f"## Retrieval-time risk\n\n`python benchmarks/retrieval_risk.py` — "
            f"{environment_line()}; model `{models.name} {models.version}`.\n\n"
            "`metrics.hallucination_risk` = calibrated P(no chunk of a relevant document in "
            "the top k), fitted by `scripts/train_retrieval_risk.py` on 505 SciFact training "
            "claims (cross-fitted figures are in the model file); measured here on the 300 "
            "SciFact test queries, never used for fitting. \"Nothing relevant\" = test "
            "queries whose returned chunks include no judged-relevant document. Baselines: "
            "AUROC of the top hit's score alone (lower = riskier) and of the variance of the "
            "hits' scores (the seed's heuristic; lower variance = riskier).\n\n"
            + "\n".join(rows)
            + f"\n\nReliability, default settings (hybrid weighted), top_k {max(TOP_KS)}:\n\n"
            + reliability
            + "\n\nOut of corpus: the 50 MS MARCO sample queries asked of the SciFact index "
              "(web questions against scientific abstracts; unjudged there, so no AUROC), mean "
              "risk at top_k 20: " + ", ".join(out_of_corpus) + ".\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["all", "evaluate"], default="all")
    args = parser.parse_args()
    trainer = load_script("train_retrieval_risk")
    trainer.WORK.mkdir(parents=True, exist_ok=True)
    if args.phase == "all":  # index in its own process (Lite is slow right after inserts)
        subprocess.run([sys.executable, str(REPO / "scripts" / "train_retrieval_risk.py"),
                        "--phase", "index"], check=True)
    body = asyncio.run(measure(trainer))
    print(body)
    write_section("retrieval_risk", body)
    print("wrote docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
