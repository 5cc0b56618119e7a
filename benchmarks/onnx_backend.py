"""The ONNX Runtime backend (fp32 and int8) against torch: encode speed, query latency, and
what each costs in dense retrieval quality on SciFact.

The corpus is the peers workload (``benchmarks/peers.py`` prepares it: every SciFact chunk
under the default config, with the packaged MiniLM's torch vectors cached). Per backend:
encode the chunks (chunks/s; torch re-encodes only the first 1,000 for the timing and uses the
cached vectors for quality), encode the 300 judged test queries, retrieve by exact cosine
(numpy, dense only: top 100 chunks → documents at their best chunk's rank) and score nDCG@10
and Recall@100; compare every chunk vector with torch's (cosine); time 200 single queries
through ``embed_query`` (the pipeline's path). Exit 1 when int8 loses more than
``BAR_INT8_LOSS`` nDCG@10 against torch.

    python benchmarks/onnx_backend.py               # ~10 min on 2 cores (two full encodes)
    python benchmarks/onnx_backend.py --chunks 3000 # the first 3,000 chunks only
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from _peer_harness import Workload, vectors_digest  # noqa: E402
from _report import BENCH_DIR, DATA, environment_line, write_section  # noqa: E402

from advanced_rag.embed.onnx import OnnxEmbedder  # noqa: E402
from advanced_rag.embed.sentence_transformers import SentenceTransformerEmbedder  # noqa: E402
from advanced_rag.eval.beir import load_beir  # noqa: E402
from advanced_rag.eval.metrics import dedupe_ranked, evaluate_run  # noqa: E402

BAR_INT8_LOSS = 0.01  # nDCG@10 int8 may lose against torch
TORCH_TIMED_CHUNKS = 1_000
LATENCY_QUERIES = 200
WARMUP = 10
TOP_CHUNKS = 100


@dataclass(frozen=True, slots=True)
class Row:
    backend: str
    file_mb: float
    chunks_per_s: float
    timed_chunks: int
    p50_ms: float
    p95_ms: float
    cos_mean: float
    cos_min: float
    ndcg: float
    recall: float


def check_cached_vectors(workload: Workload, embedder: SentenceTransformerEmbedder) -> None:
    """peers.py stamps its vectors with the weights' SHA-256 and every chunk text: refuse
    vectors another model (or another chunking) produced."""
    digest = vectors_digest(embedder.identity.sha256, (c.text for c in workload.chunks))
    stamp = (BENCH_DIR / "peers" / "vectors.sha256").read_text(encoding="utf-8")
    if stamp != digest:
        raise SystemExit("the cached peers vectors do not match this model and these chunks; "
                         "rerun benchmarks/peers.py")


def encode_timed(embedder: SentenceTransformerEmbedder, texts: list[str]) -> tuple[np.ndarray, float]:
    began = time.perf_counter()
    vectors = embedder.encode(texts)
    return vectors, len(texts) / (time.perf_counter() - began)


def query_latency(embedder: SentenceTransformerEmbedder, queries: list[str]) -> tuple[float, float]:
    """p50/p95 ms of one ``embed_query`` at a time (a warm-up first)."""
    async def run() -> list[float]:
        for query in queries[:WARMUP]:
            await embedder.embed_query(query)
        samples = []
        for query in queries:
            began = time.perf_counter()
            await embedder.embed_query(query)
            samples.append((time.perf_counter() - began) * 1e3)
        return samples

    p50, p95 = np.percentile(asyncio.run(run()), [50, 95])
    return float(p50), float(p95)


def retrieval_scores(query_vectors: np.ndarray, chunk_vectors: np.ndarray, query_ids: list[str],
                     chunk_docs: np.ndarray, qrels: dict[str, dict[str, int]]) -> tuple[float, float]:
    """Exact cosine (vectors are unit length): nDCG@10 and Recall@100 of the documents of the
    top 100 chunks, each document at its best chunk's rank."""
    scores = query_vectors @ chunk_vectors.T
    k = min(TOP_CHUNKS, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    run = {}
    for row, query_id in enumerate(query_ids):
        ranked = top[row][np.argsort(-scores[row, top[row]], kind="stable")]
        run[query_id] = dedupe_ranked(chunk_docs[ranked].tolist())
    result = evaluate_run(qrels, run)
    return result.ndcg_at_10, result.recall_at_100


def cosines(vectors: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    both = np.einsum("nd,nd->n", vectors.astype(np.float64), reference.astype(np.float64))
    return float(both.mean()), float(both.min())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=None,
                        help="use only the first N chunks of the corpus (default: all)")
    args = parser.parse_args()
    try:
        workload = Workload.load(BENCH_DIR / "peers")
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc}: run benchmarks/peers.py first (it prepares the corpus)") from exc
    chunks = workload.chunks[:args.chunks]
    texts = [c.text for c in chunks]
    chunk_docs = np.array([c.doc_id for c in chunks])
    torch_vectors = workload.vectors[:len(chunks)]
    qrels = load_beir(DATA / "retrieval" / "scifact").qrels
    query_ids = list(workload.eval_queries)
    queries = [workload.eval_queries[q] for q in query_ids]
    latency_queries = queries[:LATENCY_QUERIES]
    model = workload.model_path
    rows: list[Row] = []

    timed = min(TORCH_TIMED_CHUNKS, len(texts))
    print(f"torch: re-encoding the first {timed:,} chunks...", flush=True)
    torch_embedder = SentenceTransformerEmbedder(model)
    check_cached_vectors(workload, torch_embedder)
    fresh, rate = encode_timed(torch_embedder, texts[:timed])
    _, fresh_min = cosines(fresh, torch_vectors[:timed])
    if fresh_min < 0.9999:
        raise SystemExit(f"torch now encodes differently from the cached vectors (min cosine "
                         f"{fresh_min:.6f}): rerun benchmarks/peers.py")
    torch_queries = torch_embedder.encode(queries)
    p50, p95 = query_latency(torch_embedder, latency_queries)
    weights = sum(p.stat().st_size for p in Path(model).glob("*.safetensors"))
    ndcg, recall = retrieval_scores(torch_queries, torch_vectors, query_ids, chunk_docs, qrels)
    rows.append(Row("torch", weights / 2**20, rate, timed, p50, p95, 1.0, 1.0, ndcg, recall))
    torch_embedder.close()

    for quantize in (False, True):
        name = f"onnx {'int8' if quantize else 'fp32'}"
        began = time.perf_counter()
        embedder = OnnxEmbedder(model, cache_dir=BENCH_DIR / "onnx", quantize=quantize)
        print(f"{name}: loaded in {time.perf_counter() - began:.1f} s ({embedder.onnx_path.name}); "
              f"encoding {len(texts):,} chunks...", flush=True)
        vectors, rate = encode_timed(embedder, texts)
        query_vectors = embedder.encode(queries)
        p50, p95 = query_latency(embedder, latency_queries)
        mean, low = cosines(vectors, torch_vectors)
        ndcg, recall = retrieval_scores(query_vectors, vectors, query_ids, chunk_docs, qrels)
        rows.append(Row(name, embedder.onnx_path.stat().st_size / 2**20, rate, len(texts),
                        p50, p95, mean, low, ndcg, recall))
        embedder.close()
        print(f"  {rate:.1f} chunks/s, nDCG@10 {ndcg:.4f}", flush=True)

    body, passed = report(rows, len(chunks), len(workload.chunks), len(queries))
    print(body)
    write_section("onnx", body)
    if not passed:
        sys.exit(1)


def report(rows: list[Row], used: int, total: int, queries: int) -> tuple[str, bool]:
    torch_row, int8 = rows[0], rows[-1]
    loss = torch_row.ndcg - int8.ndcg
    passed = loss <= BAR_INT8_LOSS
    corpus = f"all {total:,} chunks" if used == total else f"the first {used:,} of {total:,} chunks"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    pinned = f" (this run pinned to {usable} of them)" if usable != os.cpu_count() else ""
    lines = ["## ONNX Runtime backend (`python benchmarks/onnx_backend.py`)", "",
             f"{environment_line()}{pinned}, onnxruntime {version('onnxruntime')}; packaged "
             f"all-MiniLM-L6-v2, batch 32. SciFact, {corpus} of the peers workload, "
             f"{queries} judged test queries, dense only, exact cosine (numpy): top "
             f"{TOP_CHUNKS} chunks → documents at their best chunk's rank.", "",
             "| backend | model file MB | chunks/s | query p50 ms | query p95 ms | "
             "mean cos vs torch | min cos vs torch | nDCG@10 | Recall@100 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cos = ("reference", "reference") if r is torch_row else (f"{r.cos_mean:.6f}",
                                                                   f"{r.cos_min:.6f}")
        lines.append(f"| {r.backend} | {r.file_mb:.1f} | {r.chunks_per_s:.1f} | {r.p50_ms:.1f} | "
                     f"{r.p95_ms:.1f} | {cos[0]} | {cos[1]} | {r.ndcg:.4f} | {r.recall:.4f} |")
    lines += ["", f"chunks/s: torch over the first {torch_row.timed_chunks:,} chunks (its "
              "quality columns use the cached vectors of all of them), ONNX over every chunk; "
              "texts sorted by length and batched alike. Query latency: one `embed_query` at a "
              f"time, {LATENCY_QUERIES} queries after {WARMUP} warm-up, each backend as the "
              "pipeline runs it (torch with `query_threads: 1`, ONNX Runtime with one intra-op "
              "thread per usable CPU, not spinning).", "",
              f"Bar: int8 may lose at most {BAR_INT8_LOSS} nDCG@10 against torch: lost "
              f"{loss:+.4f} → {'pass' if passed else 'FAIL'}. fp32 vs torch: "
              f"{rows[1].ndcg - torch_row.ndcg:+.4f} nDCG@10."]
    return "\n".join(lines), passed


if __name__ == "__main__":
    main()
