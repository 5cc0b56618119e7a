"""Retrieve latency by stage as the collection grows on Milvus Lite, beside the raw floor.

    python benchmarks/scale.py                      # 10k, 50k, 100k chunks; ~15 min
    python benchmarks/scale.py --sizes 10000,20000

Needs the prepared SciFact chunks of ``benchmarks/peers.py`` (12,554 chunks and their
MiniLM vectors, made on its first run). SciFact has 12,554 chunks, so larger collections are
built from copies of its documents under new ids, each copy's vectors perturbed (Gaussian
noise, sigma 0.02 per dimension, renormalised) so the dense index does not hold exact
duplicates; the texts (and so BM25's postings) repeat. Latency, not quality, is measured.

Per size: one child process builds the collection through ``ingest`` (vectors from the cache),
a fresh one asks 200 SciFact queries of ``retrieve()`` (default config, hybrid, audit on) and
of the floor (bare ``encode`` + ``hybrid_search``, and each search alone: dense ANN, BM25),
alternating query by query. Writes the ``scale`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer_harness import Workload, percentiles, remove  # noqa: E402
from _report import BENCH_DIR, environment_line, write_section  # noqa: E402
from peer_systems import CachedVectors, scifact_documents  # noqa: E402
from peers import WORK  # noqa: E402

TENANT = "scale"
QUERIES = 200
WARMUP = 10
NOISE = 0.02


def config(size: int) -> Any:
    from advanced_rag.config import validate_config

    db = BENCH_DIR / f"scale-{size}.db"
    return validate_config({"milvus": {"uri": str(db), "collection": "scale"},
                            "data_dir": str(db.with_suffix(".data"))})


async def build(size: int) -> None:
    from advanced_rag import AdvancedRAGPipeline
    from advanced_rag.embed.sentence_transformers import SentenceTransformerEmbedder
    from advanced_rag.types import Document

    workload = Workload.load(WORK)
    per_doc: dict[str, int] = {}
    for chunk in workload.chunks:
        per_doc[chunk.doc_id] = per_doc.get(chunk.doc_id, 0) + 1
    docs = scifact_documents()
    chosen: list[Document] = []
    total, copy = 0, 0
    while total < size:
        for doc in docs:
            if total >= size:
                break
            chosen.append(doc if copy == 0 else Document(
                id=f"{doc.id}~{copy}", text=doc.text, metadata=doc.metadata, source=doc.source))
            total += per_doc[doc.id]
        copy += 1
    cfg = config(size)
    remove(Path(cfg.milvus.uri), Path(cfg.data_dir))
    embedder = CachedVectors(SentenceTransformerEmbedder(workload.model_path), workload,
                             noise=NOISE)
    began = time.perf_counter()
    async with AdvancedRAGPipeline(cfg, embedder=embedder) as rag:
        report = await rag.ingest(chosen, tenant=TENANT)
    print(f"  built {report.chunks_written:,} chunks ({len(chosen):,} documents) in "
          f"{time.perf_counter() - began:.0f} s", flush=True)


async def query(size: int) -> dict[str, Any]:
    from _floor import Floor

    from advanced_rag import AdvancedRAGPipeline, SearchType

    workload = Workload.load(WORK)
    queries = workload.latency_queries[:QUERIES]
    cfg = config(size)
    async with AdvancedRAGPipeline.from_config(cfg) as rag:
        floor = Floor(cfg, rag.embedder._model, TENANT)  # type: ignore[attr-defined]
        for q in workload.latency_queries[-WARMUP:]:
            await rag.retrieve(q, tenant=TENANT, search_type=SearchType.HYBRID)
            floor.hybrid(q)
        rag.reset_performance()
        measured: dict[str, list[float]] = {k: [] for k in (
            "retrieve()", "floor encode", "floor encode + hybrid_search", "floor dense search",
            "floor BM25 search")}
        for i, q in enumerate(queries):
            for who in ((0, 1) if i % 2 == 0 else (1, 0)):  # alternate who goes first
                if who == 0:
                    began = time.perf_counter()
                    await rag.retrieve(q, tenant=TENANT, search_type=SearchType.HYBRID)
                    measured["retrieve()"].append((time.perf_counter() - began) * 1e3)
                else:
                    encode_ms, total_ms = floor.hybrid(q)
                    measured["floor encode"].append(encode_ms)
                    measured["floor encode + hybrid_search"].append(total_ms)
                    measured["floor dense search"].append(floor.dense(floor.encode(q)))
                    measured["floor BM25 search"].append(floor.bm25(q))
        stages = {f"pipeline {k}": {"p50": s.p50, "p95": s.p95, "p99": s.p99}
                  for k, s in rag.performance_report().stage_latencies.items()}
        rows = await rag.store.count(TENANT)
        floor.close()
    return {"rows": rows, **stages, **{k: percentiles(v) for k, v in measured.items()}}


def report(results: dict[int, dict[str, Any]]) -> str:
    sizes = sorted(results)
    names = [k for k in results[sizes[0]] if k != "rows"]
    lines = ["| p95 ms | " + " | ".join(f"{results[s]['rows']:,} chunks" for s in sizes) + " |",
             "|---" * (len(sizes) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{results[s][name]['p95']:.1f}" for s in sizes)
                     + " |")
    ratio = " | ".join(
        f"{results[s]['retrieve()']['p95'] / results[s]['floor encode + hybrid_search']['p95']:.2f}"
        for s in sizes)
    lines.append(f"| retrieve() / floor | {ratio} |")
    return ("## Scale curve (Milvus Lite)\n\n"
            f"`python benchmarks/scale.py` — {environment_line()}.\n"
            "SciFact chunks, then copies of its documents under new ids (vectors perturbed, "
            f"sigma {NOISE}); {QUERIES} SciFact queries after {WARMUP} warm-up, pipeline (default "
            "config: hybrid, weighted fusion, 20 hits of 100 candidates per signal, audit on) "
            "and floor alternating in a fresh process per size. Pipeline rows are its own "
            "stage timings (`metrics.stage_ms`); floor rows time a bare MilvusClient on the "
            "same collection.\n\n" + "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,50000,100000",
                        help="comma-separated collection sizes in chunks")
    parser.add_argument("--reuse", action="store_true",
                        help="query the collections a previous run built (skip the builds)")
    parser.add_argument("--phase", choices=["build", "query"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (WORK / "workload.json").exists():
        print("run benchmarks/peers.py first: it prepares the chunks and vectors", file=sys.stderr)
        return 2
    out_dir = BENCH_DIR / "scale"
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.phase == "build":
        asyncio.run(build(args.size))
        return 0
    if args.phase == "query":
        result = asyncio.run(query(args.size))
        (out_dir / f"{args.size}.json").write_text(json.dumps(result), encoding="utf-8")
        return 0
    results: dict[int, dict[str, Any]] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"{size:,} chunks", flush=True)
        built = Path(config(size).milvus.uri).exists()
        for phase in (("query",) if args.reuse and built else ("build", "query")):
            subprocess.run([sys.executable, __file__, "--phase", phase, "--size", str(size)],
                           check=True)
        results[size] = json.loads((out_dir / f"{size}.json").read_text(encoding="utf-8"))
    body = report(results)
    write_section("scale", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
