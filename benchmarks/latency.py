"""Retrieve latency against the raw-pymilvus floor, and ingest throughput against raw encode.

    python benchmarks/latency.py          # ~12 min on 2 cores

1. ``--phase ingest`` (own process): the first SciFact documents that make ~10,000 chunks are
   ingested through the pipeline into an empty Milvus Lite collection (chunks/s, all stages),
   then the very texts it indexed are encoded by the bare embedder (chunks/s).
2. ``--phase query`` (a fresh process: Lite searches slowly while it compacts after inserts):
   200 SciFact queries, alternating the pipeline's ``retrieve`` (hybrid, default config) and
   the floor — the same model's ``encode`` + ``MilvusClient.hybrid_search`` with the same
   requests, ranker, filter and output fields on the same collection.

Writes the ``latency`` section of docs/benchmarks.md; exit 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import BENCH_DIR, DATA, environment_line, write_section  # noqa: E402

from advanced_rag import AdvancedRAGPipeline, SearchType  # noqa: E402
from advanced_rag.config import validate_config  # noqa: E402
from advanced_rag.eval.beir import load_beir  # noqa: E402
from advanced_rag.ingestion import Ingestor  # noqa: E402
from advanced_rag.sources import read_jsonl  # noqa: E402
from advanced_rag.types import Document  # noqa: E402

SCIFACT = DATA / "retrieval" / "scifact"
TARGET_CHUNKS = 10_000
QUERIES = 200
WARMUP = 10
TENANT = "bench"
DB = BENCH_DIR / "latency.db"
RESULT = BENCH_DIR / "latency-ingest.json"
BAR_LATENCY, BAR_INGEST, BAR_AUDIT_MS = 1.15, 0.80, 1.0


def config():  # type: ignore[no-untyped-def]
    return validate_config({"milvus": {"uri": str(DB), "collection": "latency"},
                            "data_dir": str(BENCH_DIR)})


async def phase_ingest() -> None:
    shutil.rmtree(DB, ignore_errors=True)
    cfg = config()
    async with AdvancedRAGPipeline.from_config(cfg) as rag:
        embedder = rag.embedder
        docs = [d for d in read_jsonl(load_beir(SCIFACT).corpus_path) if isinstance(d, Document)]
        # the first documents that make TARGET_CHUNKS chunks with this config
        planner = Ingestor(rag.store, embedder, cfg.chunking, cfg.ingest)
        chosen: list[Document] = []
        texts: list[str] = []  # exactly what ingest will embed (it chunks through prepare())
        for doc in docs:
            chosen.append(doc)
            texts.extend(planner.prepare(doc)[1])
            if len(texts) >= TARGET_CHUNKS:
                break
        await embedder.embed_documents(["warm-up"] * 32)
        began = time.perf_counter()
        report = await rag.ingest(chosen, tenant=TENANT)
        ingest_s = time.perf_counter() - began
        began = time.perf_counter()
        embedder.encode(texts)  # type: ignore[attr-defined]
        encode_s = time.perf_counter() - began
    RESULT.write_text(json.dumps({
        "documents": len(chosen), "chunks": report.chunks_written, "texts": len(texts),
        "ingest_s": ingest_s, "encode_s": encode_s, "stages": dict(report.stage_seconds)}),
        encoding="utf-8")
    print(f"ingested {len(chosen)} documents / {report.chunks_written} chunks in {ingest_s:.1f} s; "
          f"raw encode of the same {len(texts)} texts {encode_s:.1f} s")


def fsync_ms(directory: Path, count: int = 200) -> list[float]:
    """The disk's durable-commit floor: append 512 bytes and fsync, ``count`` times (SQLite in
    WAL mode with synchronous=FULL, the audit default, fsyncs the WAL once per commit)."""
    path = directory / "fsync-probe.bin"
    out = []
    with path.open("ab") as handle:
        for _ in range(count):
            began = time.perf_counter()
            handle.write(b"\0" * 512)
            handle.flush()
            os.fsync(handle.fileno())
            out.append((time.perf_counter() - began) * 1e3)
    path.unlink()
    return out


def _pct(values: list[float]) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(np.asarray(values), [50, 95, 99])
    return float(p50), float(p95), float(p99)


async def phase_query() -> int:
    from _floor import Floor

    cfg = config()
    dataset = load_beir(SCIFACT)
    queries = [dataset.queries[q] for q in sorted(dataset.qrels, key=int)][:QUERIES]
    settings = cfg.pipeline
    async with AdvancedRAGPipeline.from_config(cfg) as rag:
        model = rag.embedder._model  # type: ignore[attr-defined]  # the same weights, bare
        raw = Floor(cfg, model, TENANT)
        floor = raw.hybrid
        for query in queries[:WARMUP]:
            await rag.retrieve(query, tenant=TENANT, search_type=SearchType.HYBRID)
            floor(query)
        rag.reset_performance()
        ours_total, floor_total, floor_embed = [], [], []
        for i, query in enumerate(queries):
            order = (0, 1) if i % 2 == 0 else (1, 0)  # alternate who goes first
            for who in order:
                if who == 0:
                    began = time.perf_counter()
                    await rag.retrieve(query, tenant=TENANT, search_type=SearchType.HYBRID)
                    ours_total.append((time.perf_counter() - began) * 1e3)
                else:
                    embed_ms, total_ms = floor(query)
                    floor_embed.append(embed_ms)
                    floor_total.append(total_ms)
        report = rag.performance_report()
        rows_n = await rag.store.count(TENANT)
        raw.close()
    ingest = json.loads(RESULT.read_text(encoding="utf-8"))
    lines = ["| stage | p50 ms | p95 ms | p99 ms |", "|---|---|---|---|"]
    for stage, s in report.stage_latencies.items():
        lines.append(f"| pipeline `{stage}` | {s.p50:.1f} | {s.p95:.1f} | {s.p99:.1f} |")
    o50, o95, o99 = _pct(ours_total)
    f50, f95, f99 = _pct(floor_total)
    e50, e95, e99 = _pct(floor_embed)
    lines.append(f"| pipeline `retrieve()` wall clock | {o50:.1f} | {o95:.1f} | {o99:.1f} |")
    lines.append(f"| floor: `encode` | {e50:.1f} | {e95:.1f} | {e99:.1f} |")
    lines.append(f"| floor: `encode` + `hybrid_search` | {f50:.1f} | {f95:.1f} | {f99:.1f} |")
    ratio = o95 / f95
    audit95 = report.stage_latencies["audit"].p95
    s50, s95, _ = _pct(fsync_ms(Path(cfg.data_dir)))
    ok_audit = audit95 <= BAR_AUDIT_MS
    ingest_rate = ingest["chunks"] / ingest["ingest_s"]
    encode_rate = ingest["texts"] / ingest["encode_s"]
    ingest_ratio = ingest_rate / encode_rate
    ok_latency, ok_ingest = ratio <= BAR_LATENCY, ingest_ratio >= BAR_INGEST
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in ingest["stages"].items())
    body = (
        f"## Latency and ingest throughput\n\n`python benchmarks/latency.py` — {environment_line()}.\n"
        f"Milvus Lite, {rows_n:,} chunks from the first {ingest['documents']:,} SciFact documents, "
        f"{len(queries)} SciFact queries after {WARMUP} warm-up, hybrid search with the default "
        f"config (fusion `{settings.fusion}`, top_k {settings.top_k}, {settings.candidate_limit} "
        "candidates per signal), pipeline and floor alternating query by query in one fresh "
        "process.\n\n" + "\n".join(lines) + "\n\n"
        f"- bar p95 pipeline / floor <= {BAR_LATENCY}: {o95:.1f} / {f95:.1f} = {ratio:.3f} "
        f"{'PASS' if ok_latency else 'FAIL'}\n"
        f"- ingest: {ingest['chunks']:,} chunks in {ingest['ingest_s']:.1f} s = "
        f"{ingest_rate:.1f} chunks/s (stages: {stages}); bare `encode` of the same "
        f"{ingest['texts']:,} texts {ingest['encode_s']:.1f} s = {encode_rate:.1f} chunks/s\n"
        f"- bar ingest / encode throughput >= {BAR_INGEST}: {ingest_ratio:.3f} "
        f"{'PASS' if ok_ingest else 'FAIL'}\n"
        f"- bar audit stage p95 <= {BAR_AUDIT_MS} ms: {audit95:.2f} ms "
        f"{'PASS' if ok_audit else 'FAIL'}; the disk's own fsync of 512 bytes in the same folder "
        f"(the floor of a durable commit; SQLite WAL, synchronous=FULL, fsyncs once per commit): "
        f"p50 {s50:.2f} / p95 {s95:.2f} ms\n")
    write_section("latency", body)
    print(body)
    return 0 if ok_latency and ok_ingest and ok_audit else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["all", "ingest", "query"], default="all")
    args = parser.parse_args()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    if args.phase == "ingest":
        asyncio.run(phase_ingest())
        return 0
    if args.phase == "query":
        return asyncio.run(phase_query())
    me = [sys.executable, __file__]
    subprocess.run([*me, "--phase", "ingest"], check=True)
    return subprocess.run([*me, "--phase", "query"]).returncode


if __name__ == "__main__":
    raise SystemExit(main())
