"""What every child process of ``benchmarks/peers.py`` shares: the prepared corpus, the
measurements and the result file.

It imports neither ``advanced_rag`` nor pymilvus: the llama-index child runs in its own
virtualenv (llama-index-vector-stores-milvus requires pymilvus < 3, this library >= 3).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

Search = Callable[[str], Awaitable[list[str]]]
"""One query → the doc ids of its top chunks, best first."""

LEVELS = (1, 4, 8, 16)
WARMUP = 10
TOP_K = 20  # chunks per query; each document is scored at its best chunk's rank
CANDIDATES = 100  # per signal, where a system lets us choose


@dataclass(frozen=True, slots=True)
class Chunk:
    id: str
    doc_id: str
    text: str


@dataclass(frozen=True, slots=True)
class Workload:
    """The prepared corpus (``prepare`` in peers.py writes it): the chunks every system
    indexes, their vectors from the packaged MiniLM, the queries, and the live-ingest sample
    (the first ``live_chunks`` chunks: whole documents)."""

    chunks: list[Chunk]
    vectors: np.ndarray
    latency_queries: list[str]
    eval_queries: dict[str, str]
    live_chunks: int
    model_path: str

    @classmethod
    def load(cls, work: Path) -> Workload:
        meta = json.loads((work / "workload.json").read_text(encoding="utf-8"))
        with (work / "chunks.jsonl").open(encoding="utf-8") as handle:
            chunks = [Chunk(**json.loads(line)) for line in handle]
        vectors = np.load(work / "vectors.npy")
        if len(vectors) != len(chunks):
            raise SystemExit(f"{work}: {len(chunks)} chunks but {len(vectors)} vectors; "
                             "rerun peers.py to prepare again")
        return cls(chunks, vectors, meta["latency_queries"], meta["eval_queries"],
                   meta["live_chunks"], meta["model_path"])


class PeakRSS:
    """Peak resident memory of this process and its children (Milvus Lite runs its server as
    a child process), sampled every ``interval`` seconds on a daemon thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.peak = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")

    def _sample(self) -> int:
        me = psutil.Process()
        total: int = me.memory_info().rss
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # exited between listing and reading
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())

    @property
    def mb(self) -> float:
        return self.peak / 2**20


def percentiles(values: Sequence[float]) -> dict[str, float]:
    p50, p95, p99 = np.percentile(np.asarray(values, dtype=float), [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


async def run_concurrently(search: Search, queries: Sequence[str], concurrency: int
                           ) -> tuple[float, list[float], list[list[str]]]:
    """``concurrency`` callers take the queries in order until none is left: queries/s over
    the wall clock, each call's latency (ms) and each query's result."""
    latencies = [0.0] * len(queries)
    results: list[list[str]] = [[] for _ in queries]
    cursor = iter(range(len(queries)))

    async def caller() -> None:
        for i in cursor:
            began = time.perf_counter()
            results[i] = await search(queries[i])
            latencies[i] = (time.perf_counter() - began) * 1e3

    began = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    return len(queries) / wall, latencies, results


async def measure_queries(search: Search, workload: Workload) -> dict[str, Any]:
    """Warm up, then queries/s and latency at each concurrency level over the same queries,
    then the rankings of the judged queries (for nDCG, scored by the parent)."""
    for query in workload.latency_queries[:WARMUP]:
        await search(query)
    levels: dict[str, Any] = {}
    for level in LEVELS:
        qps, latencies, _ = await run_concurrently(search, workload.latency_queries, level)
        levels[str(level)] = {"qps": qps, **percentiles(latencies)}
        print(f"  concurrency {level:>2}: {qps:6.1f} queries/s, "
              f"p50 {levels[str(level)]['p50']:.1f} ms, p95 {levels[str(level)]['p95']:.1f} ms",
              flush=True)
    ids = list(workload.eval_queries)
    _, _, ranked = await run_concurrently(search, [workload.eval_queries[q] for q in ids], 4)
    return {"levels": levels, "rankings": dict(zip(ids, ranked, strict=True))}


def child_arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--phase", choices=["ingest", "query"], required=True)
    parser.add_argument("--work", type=Path, required=True, help="the prepared workload folder")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to (re)write")
    return parser.parse_args()


def vectors_digest(model_sha256: str, texts: Iterable[str]) -> str:
    """What the cached vectors were computed from: the model's weights and every chunk text
    (peers.py stamps its cache with it; other benchmarks check the stamp before reuse)."""
    digest = hashlib.sha256(model_sha256.encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()


def remove(*paths: Path) -> None:
    """Delete each path, a Milvus Lite database folder or a file, if it exists."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
        path.unlink(missing_ok=True)


def merge_result(path: Path, **fields: Any) -> None:
    """Add ``fields`` to the system's result file (ingest and query phases write in turn)."""
    current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    current.update(fields)
    path.write_text(json.dumps(current), encoding="utf-8")
