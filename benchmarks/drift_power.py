"""Drift detector validation: false-alarm rate and power on real query embeddings; writes section
"drift_power" of docs/benchmarks.md.

Data: SciFact queries (scientific claims, ~1,100) and the 50 MS MARCO sample queries (web search
questions), embedded with the packaged MiniLM (read from the shared data folder, never copied).

* False alarms: random disjoint SciFact splits, reference 100 vs current 100, no drift by
  construction; the rate of ``drift_detected`` with the default ``DriftSettings`` (α = 0.05,
  family-wise through Holm–Bonferroni).
* Power: current windows of 100 that mix in 10 / 20 / 30 / 50 % MS MARCO queries (the rest SciFact,
  disjoint from the reference); only 50 MS MARCO queries exist, so trials resample them.

Only the query-embedding tests run (MMD, PCA-KS, domain classifier): these windows have no scores
or categories. On the same splits: the seed's rule (cosine distance between the mean embeddings
> 0.15), an Evidently-style rule (domain-classifier AUC > 0.55) and each test alone at its own
unadjusted α.

    HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false .venv/bin/python benchmarks/drift_power.py

``--seed`` picks the splits (the reported run uses the default; any tuning used other seeds);
``--trials N`` overrides the trial counts for a smoke run (no doc write). Exit 1 when a bar fails.
"""

from __future__ import annotations

import os

# Many small matrix products: one BLAS thread avoids thread thrashing on a shared 2-core box.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from advanced_rag.config import DriftSettings  # noqa: E402
from advanced_rag.drift.detector import Window, detect  # noqa: E402
from advanced_rag.drift.stats import pca_ks_test  # noqa: E402
from advanced_rag.embed.sentence_transformers import SentenceTransformerEmbedder  # noqa: E402
from benchmarks._report import DATA, environment_line, write_section  # noqa: E402

SCIFACT = DATA / "retrieval" / "scifact" / "queries.jsonl"
MSMARCO = DATA / "retrieval" / "msmarco-sample" / "queries.jsonl"
WINDOW = 100
NULL_TRIALS = 200
POWER_TRIALS = 100
MIXES = (0.1, 0.2, 0.3, 0.5)
SEED_RULE_THRESHOLD = 0.15  # the seed's mean-embedding cosine distance rule
EVIDENTLY_AUC = 0.55  # Evidently's default domain-classifier threshold
BAR_FALSE_ALARMS, BAR_POWER_30 = 0.07, 0.90
DEFAULT_SEED = 20240601
TESTS = ("query.mmd", "query.pca_ks", "query.classifier")


def texts(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in handle if line.strip()]


@dataclass(frozen=True)
class Trial:
    detected: bool
    seed_rule: bool
    evidently: bool
    unadjusted: dict[str, bool]
    reference_fit_ks: bool
    magnitude: float


def cosine_distance_of_means(a: np.ndarray, b: np.ndarray) -> float:
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    return float(1.0 - ma @ mb / (np.linalg.norm(ma) * np.linalg.norm(mb)))


def run_trial(reference: np.ndarray, current: np.ndarray, settings: DriftSettings) -> Trial:
    report = detect(Window("reference", reference, tuple(f"r{i}" for i in range(len(reference)))),
                    Window("current", current, tuple(f"c{i}" for i in range(len(current)))), settings)
    by_name = {o.result.name: o.result for o in report.tests}
    assert set(by_name) == set(TESTS), by_name.keys()
    return Trial(report.drift_detected,
                 cosine_distance_of_means(reference, current) > SEED_RULE_THRESHOLD,
                 by_name["query.classifier"].statistic > EVIDENTLY_AUC,
                 {name: by_name[name].p_value <= settings.alpha for name in TESTS},
                 pca_ks_test(reference, current, components=settings.pca_components,
                             correction=settings.correction, fit="reference").p_value <= settings.alpha,
                 float(report.drift_magnitude or 0.0))


def scenario(scifact: np.ndarray, msmarco: np.ndarray, mix: float, trials: int, seed: int,
             settings: DriftSettings, progress: object) -> list[Trial]:
    rng = np.random.default_rng([seed, int(round(mix * 100))])
    out = []
    outside = int(round(mix * WINDOW))
    for t in range(trials):
        order = rng.permutation(len(scifact))
        reference = scifact[order[:WINDOW]]
        inside = scifact[order[WINDOW:2 * WINDOW - outside]]
        current = np.vstack([inside, msmarco[rng.choice(len(msmarco), outside, replace=False)]])
        out.append(run_trial(reference, current, settings.model_copy(update={"seed": seed + t})))
        progress.update(1)  # type: ignore[attr-defined]
    return out


def rate(values: list[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="split seed (tune on another one)")
    parser.add_argument("--trials", type=int, default=None,
                        help="trials per scenario (smoke run; no doc write)")
    args = parser.parse_args()
    from tqdm import tqdm

    began = time.perf_counter()
    settings = DriftSettings()
    embedder = SentenceTransformerEmbedder()
    scifact_texts, msmarco_texts = texts(SCIFACT), texts(MSMARCO)
    scifact = embedder.encode(scifact_texts).astype(np.float64)
    msmarco = embedder.encode(msmarco_texts).astype(np.float64)
    embedder.close()
    embedded = time.perf_counter() - began
    null_trials = args.trials or NULL_TRIALS
    power_trials = args.trials or POWER_TRIALS
    scenarios = [(0.0, null_trials)] + [(mix, power_trials) for mix in MIXES]
    results: dict[float, list[Trial]] = {}
    with tqdm(total=sum(n for _, n in scenarios), desc="drift trials", file=sys.stderr) as bar:
        for mix, n in scenarios:
            results[mix] = scenario(scifact, msmarco, mix, n, args.seed, settings, bar)
    elapsed = time.perf_counter() - began

    rows = []
    for mix, trials in results.items():
        label = "no drift (false alarms)" if mix == 0.0 else f"{int(mix * 100)} % MS MARCO (power)"
        rows.append([label, str(len(trials)),
                     f"{rate([t.detected for t in trials]):.3f}",
                     f"{rate([t.seed_rule for t in trials]):.3f}",
                     f"{rate([t.evidently for t in trials]):.3f}",
                     *[f"{rate([t.unadjusted[name] for t in trials]):.3f}" for name in TESTS],
                     f"{rate([t.reference_fit_ks for t in trials]):.3f}",
                     f"{np.mean([t.magnitude for t in trials]):.3f}"])
    false_alarms = rate([t.detected for t in results[0.0]])
    power_30 = rate([t.detected for t in results[0.3]])
    bars = [(f"false-alarm rate <= {BAR_FALSE_ALARMS:.2f} (no-drift splits)",
             false_alarms <= BAR_FALSE_ALARMS),
            (f"power >= {BAR_POWER_30:.2f} at 30 % MS MARCO", power_30 >= BAR_POWER_30)]
    lines = [
        "## Drift detection: false alarms and power", "",
        f"`benchmarks/drift_power.py` (split seed {args.seed}); {environment_line()}; "
        f"{elapsed:.0f} s including embedding ({embedded:.0f} s).",
        f"Queries: SciFact ({len(scifact_texts)}) and the MS MARCO sample ({len(msmarco_texts)}), packaged "
        "MiniLM embeddings. Windows of 100 vs 100; the no-drift rows are random disjoint SciFact splits, "
        "the power rows mix MS MARCO queries into the current window (only 50 exist, so trials resample "
        "them). Detector = `advanced_rag.drift.detector.detect` with the default `DriftSettings` "
        f"(α = {settings.alpha}, family-wise via Holm–Bonferroni; {settings.permutations} permutations, "
        f"PCA {settings.pca_components} components, {settings.correction}). Only the query-embedding "
        "tests run: these windows carry no scores or categories, so the score and categorical tests "
        "are not exercised here (their null calibration is checked in tests/unit/drift).",
        "Baselines on the same splits: the seed's rule (cosine distance between mean embeddings > "
        f"{SEED_RULE_THRESHOLD}) and an Evidently-style rule (domain-classifier cross-validated AUC > "
        f"{EVIDENTLY_AUC}); the last three rate columns are each test alone at its own unadjusted "
        f"α = {settings.alpha} (informative; the verdict uses the Holm-adjusted p-values). "
        "Magnitude = mean `drift_magnitude` (2·max(AUC − 0.5, 0)). The PCA-KS reference-fit column is "
        "`pca_ks_test(fit=\"reference\")` on the same splits: fitting the PCA on the very reference rows "
        "that are tested inflates their spread along their own top axes, hence its false alarms; the "
        "detector fits every reduction on the pooled windows (label-free, exact).",
        "Design choices were made on other split seeds, never on the reported one: seed 7 to choose "
        "(pooled PCA; MMD on the top PCA components with bandwidths 0.5 / 1 / 2 × the median distance, "
        "aggregated by a permutation-calibrated min-p as in MMDAgg) and seeds 11 and 13 to check "
        "(false alarms 0.06 / 0.04, power at 30 % 0.99 / 0.98 with 100 trials each).", "",
        "| scenario | trials | detector (Holm) | seed rule | Evidently-style | MMD alone | PCA-KS alone "
        "| classifier alone | PCA-KS, reference-fit PCA, alone | magnitude |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "| bar | value | result |", "|---|---|---|",
              f"| {bars[0][0]} | {false_alarms:.3f} | {'PASS' if bars[0][1] else 'FAIL'} |",
              f"| {bars[1][0]} | {power_30:.3f} | {'PASS' if bars[1][1] else 'FAIL'} |"]
    body = "\n".join(lines)
    print(body)
    if args.trials is None and args.seed == DEFAULT_SEED:
        write_section("drift_power", body)
    return 0 if all(ok for _, ok in bars) else 1


if __name__ == "__main__":
    sys.exit(main())
