"""advanced-rag side by side with raw pymilvus, langchain-milvus and llama-index on one corpus.

    pip install -e '.[bench]'        # langchain-milvus, langchain-huggingface, psutil
    python benchmarks/peers.py       # ~25 min on 2 cores the first time (encodes the corpus)

Every system indexes the same chunks of the SciFact corpus (all 5,183 documents, chunked by
this library's default chunker: at most 200 tokens, headed by the title) with the same
packaged all-MiniLM-L6-v2, in its own Milvus Lite database, hybrid (dense + Milvus built-in
BM25) search, 20 chunks per query. Per system, in child processes:

1. ingest: the first documents that make ~2,000 chunks, encoded live and written (chunks/s);
   then the whole corpus written from vectors the same model computed once here (cached in
   .advanced-rag/bench/peers/), so the comparison is not four times six minutes of identical
   encoding;
2. query, in a fresh process (Milvus Lite searches slowly while it compacts after inserts):
   200 SciFact test queries after 10 warm-up, at 1, 4, 8 and 16 concurrent async callers
   (queries/s, latency percentiles per call), then the 300 judged queries for nDCG@10 (each
   document at its best chunk's rank); peak RSS of the process and its Milvus Lite server.

llama-index-vector-stores-milvus needs pymilvus < 3 (this library needs >= 3), so it runs from
benchmarks/peer_llamaindex.py in its own virtualenv, made on first use at
.advanced-rag/bench/venv-llamaindex (``--no-llamaindex`` skips it).

Writes the ``peers`` section of docs/benchmarks.md; exit 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peer_harness import (  # noqa: E402
    LEVELS,
    TOP_K,
    PeakRSS,
    Workload,
    measure_queries,
    merge_result,
    remove,
    vectors_digest,
)
from _report import BENCH_DIR, DATA, REPO, environment_line, write_section  # noqa: E402

WORK = BENCH_DIR / "peers"
SCIFACT = DATA / "retrieval" / "scifact"
LIVE_CHUNKS = 2_000
LATENCY_QUERIES = 200
LLAMA_VENV = BENCH_DIR / "venv-llamaindex"
LLAMA_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-llamaindex.txt"
BAR_QUALITY, BAR_TUNED, BAR_THROUGHPUT = 0.690, 0.70, 1.5
THROUGHPUT_LEVEL = "8"
DEFAULT_SYSTEMS = ("raw", "advanced-rag", "advanced-rag-plain", "langchain", "llamaindex",
                   "advanced-rag-server", "langchain-server")


# -- the workload ------------------------------------------------------------------------------

def prepare() -> Workload:
    """Chunk SciFact with the default config; encode every chunk once (cached by content)."""
    from advanced_rag.config import validate_config
    from advanced_rag.embed.sentence_transformers import (
        SentenceTransformerEmbedder,
        resolve_model_path,
    )
    from advanced_rag.eval.beir import load_beir
    from advanced_rag.ingestion import Ingestor
    from advanced_rag.sources import read_jsonl
    from advanced_rag.types import Document

    WORK.mkdir(parents=True, exist_ok=True)
    cfg = validate_config({})
    embedder = SentenceTransformerEmbedder(cfg.embedder.model)
    dataset = load_beir(SCIFACT)
    planner = Ingestor(None, embedder, cfg.chunking, cfg.ingest)  # type: ignore[arg-type]  # chunking only
    rows: list[dict[str, str]] = []
    live = 0
    for doc in read_jsonl(dataset.corpus_path):
        if not isinstance(doc, Document):
            continue
        _, texts = planner.prepare(doc)
        rows.extend({"id": f"{doc.id}#{i}", "doc_id": doc.id, "text": t}
                    for i, t in enumerate(texts))
        if not live and len(rows) >= LIVE_CHUNKS:
            live = len(rows)  # whole documents
    digest = vectors_digest(embedder.identity.sha256, (r["text"] for r in rows))
    vectors_path, stamp = WORK / "vectors.npy", WORK / "vectors.sha256"
    if not (vectors_path.exists() and stamp.exists()
            and stamp.read_text(encoding="utf-8") == digest):
        print(f"encoding {len(rows):,} chunks once (cached for later runs)...", flush=True)
        began = time.perf_counter()
        np.save(vectors_path, embedder.encode([r["text"] for r in rows]))
        stamp.write_text(digest, encoding="utf-8")
        print(f"  {time.perf_counter() - began:.0f} s", flush=True)
    with (WORK / "chunks.jsonl").open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    judged = sorted(dataset.qrels, key=int)
    (WORK / "workload.json").write_text(json.dumps({
        "latency_queries": [dataset.queries[q] for q in judged[:LATENCY_QUERIES]],
        "eval_queries": {q: dataset.queries[q] for q in judged},
        "live_chunks": live,
        "model_path": resolve_model_path(cfg.embedder.model),
        "documents": len({r["doc_id"] for r in rows}),
    }), encoding="utf-8")
    embedder.close()
    return Workload.load(WORK)


# -- a child process: one system, one phase ------------------------------------------------------

async def child(system_key: str, phase: str, work: Path, out: Path) -> None:
    from peer_systems import SHARES_INDEX, SYSTEMS

    workload = Workload.load(work)
    system = SYSTEMS[system_key]()
    db = work / f"{SHARES_INDEX.get(system_key, system_key)}.db"
    print(f"{system.name}: {phase}", flush=True)
    if phase == "ingest":
        live_db = work / f"{system_key}-live.db"
        remove(db, live_db, db.with_suffix(".data"), live_db.with_suffix(".data"))
        with PeakRSS() as rss:
            began = time.perf_counter()
            written = await system.ingest_live(workload, live_db)
            seconds = time.perf_counter() - began
            await system.build(workload, db)
        print(f"  live ingest {written:,} chunks in {seconds:.1f} s", flush=True)
        merge_result(out, name=system.name, ingest_chunks=written, ingest_s=seconds,
                     ingest_rss_mb=rss.mb)
        return
    with PeakRSS() as rss:
        search = await system.searcher(workload, db)
        measured = await measure_queries(search, workload)
        await system.close()
    merge_result(out, name=system.name, query_rss_mb=rss.mb, **measured)


# -- the parent ----------------------------------------------------------------------------------

def llama_python() -> Path | None:
    """The llama-index virtualenv's interpreter, made on first use (torch CPU wheel first)."""
    python = LLAMA_VENV / "bin" / "python"
    if not python.exists():
        print(f"making {LLAMA_VENV} for llama-index (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LLAMA_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        if (subprocess.run([*pip, "torch==2.13.0"]).returncode
                or subprocess.run([*pip, "-r", str(LLAMA_REQUIREMENTS)]).returncode):
            shutil.rmtree(LLAMA_VENV, ignore_errors=True)
            return None
    return python


def run_system(key: str, *, python: str, script: Path, extra: list[str],
               phases: tuple[str, ...] = ("ingest", "query")) -> dict[str, Any]:
    out = WORK / f"{key}.json"
    out.unlink(missing_ok=True)
    for phase in phases:
        done = subprocess.run([python, str(script), *extra, "--phase", phase, "--work", str(WORK),
                               "--out", str(out)], cwd=REPO)
        if done.returncode != 0:
            print(f"{key}: the {phase} phase failed (exit {done.returncode})", file=sys.stderr)
            return {"name": key, "error": f"{phase} phase exited {done.returncode}"}
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def ndcg(result: dict[str, Any], qrels: Any) -> float:
    from advanced_rag.eval.metrics import dedupe_ranked, evaluate_run

    run = {q: dedupe_ranked(docs) for q, docs in result["rankings"].items()}
    return evaluate_run(qrels, run).ndcg_at_10


def report(results: list[dict[str, Any]], workload: Workload, documents: int) -> tuple[str, bool]:
    header = ("| system | ingest chunks/s | p50 ms | p95 ms | p99 ms | "
              + " | ".join(f"q/s @{n}" for n in LEVELS)
              + " | nDCG@10 | peak RSS serving MB | peak RSS ingest MB |")
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    from advanced_rag.eval.beir import load_beir

    qrels = load_beir(SCIFACT).qrels
    by_name: dict[str, dict[str, Any]] = {}
    for r in results:
        if "error" in r or "levels" not in r:
            lines.append(f"| {r.get('name', '?')} | failed: {r.get('error', 'no query results')} |")
            continue
        r["ndcg"] = ndcg(r, qrels)
        by_name[r["name"]] = r
        one = r["levels"]["1"]
        ingest = f"{r['ingest_chunks'] / r['ingest_s']:.1f}" if "ingest_s" in r else "(same index)"
        ingest_rss = f"{r['ingest_rss_mb']:.0f}" if "ingest_rss_mb" in r else "-"
        lines.append(
            f"| {r.get('name', '?')} | {ingest} | {one['p50']:.1f} | "
            f"{one['p95']:.1f} | {one['p99']:.1f} | "
            + " | ".join(f"{r['levels'][str(n)]['qps']:.1f}" for n in LEVELS)
            + f" | {r['ndcg']:.4f} | {r['query_rss_mb']:.0f} | {ingest_rss} |")
    checks: list[tuple[str, bool | None]] = []  # None: for information, not a bar
    ours, lc = by_name.get("advanced-rag"), by_name.get("langchain-milvus")
    floor = by_name.get("raw pymilvus (floor)")
    if ours and lc:
        checks.append((f"nDCG@10 advanced-rag {ours['ndcg']:.4f} >= langchain-milvus "
                       f"{lc['ndcg']:.4f} and >= {BAR_TUNED}",
                       ours["ndcg"] >= lc["ndcg"] and ours["ndcg"] >= BAR_TUNED))
        a, b = ours["levels"][THROUGHPUT_LEVEL]["qps"], lc["levels"][THROUGHPUT_LEVEL]["qps"]
        checks.append((f"queries/s at {THROUGHPUT_LEVEL} callers advanced-rag / langchain-milvus "
                       f"= {a:.1f} / {b:.1f} = {a / b:.2f} >= {BAR_THROUGHPUT}",
                       a / b >= BAR_THROUGHPUT))
    ours_s = by_name.get("advanced-rag, milvus-lite server process")
    lc_s = by_name.get("langchain-milvus, milvus-lite server process")
    if ours_s and lc_s:
        a, b = ours_s["levels"][THROUGHPUT_LEVEL]["qps"], lc_s["levels"][THROUGHPUT_LEVEL]["qps"]
        checks.append((f"both with Milvus Lite in its own server process: queries/s at "
                       f"{THROUGHPUT_LEVEL} callers {a:.1f} / {b:.1f} = {a / b:.2f}", None))
    if ours and floor:
        a, b = ours["levels"]["1"]["p95"], floor["levels"]["1"]["p95"]
        checks.append((f"p95 one caller advanced-rag / raw pymilvus = {a:.1f} / {b:.1f} = "
                       f"{a / b:.3f} (the bar is measured on one collection, interleaved, in "
                       "the latency section)", None))
    body = (
        "## Side by side with peers\n\n"
        f"`python benchmarks/peers.py` — {environment_line()}; {peer_versions()}.\n"
        f"SciFact, {documents:,} documents → {len(workload.chunks):,} chunks (this library's "
        f"default chunker, the same chunk texts for everyone), packaged all-MiniLM-L6-v2, one "
        f"Milvus Lite database per system, hybrid dense + built-in BM25, {TOP_K} chunks per "
        "query, 100 candidates per signal (llama-index: 20, it has no separate fetch depth), "
        "RRF k=60 for the peers and the floor, each with its own default BM25 analyzer "
        "(lowercase). advanced-rag with its default config: weighted fusion alpha 0.2 as tuned "
        "on SciFact training claims, audit on, retrieval risk on, query and search coalescing, "
        "1 torch thread for queries, Lucene's 33 English stop words in the BM25 analyzer; the "
        "'no coalescing...' row turns those three off (its own index). 'server process' rows: "
        "the same index served by `milvus-lite server` (one worker) in a separate process. "
        "Ingest chunks/s: the first "
        f"{workload.live_chunks:,} chunks (whole documents) encoded live and written. Latency "
        f"percentiles: {len(workload.latency_queries)} test queries at one caller, after "
        "10 warm-up; q/s @n: the same queries with n concurrent async callers; nDCG@10 over "
        f"the {len(workload.eval_queries)} judged test queries (document at its best chunk). "
        "Peak RSS: the Python process plus its Milvus Lite server. Each system's queries run "
        "in a fresh process.\n\n" + "\n".join(lines) + "\n\n"
        + "\n".join(f"- {'info' if ok is None else 'PASS' if ok else 'FAIL'}  {text}"
                    for text, ok in checks) + "\n")
    return body, all(ok is not False for _, ok in checks)


def peer_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("langchain-milvus", "langchain-core"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            pass
    llama = WORK / "llamaindex.json"
    if llama.exists():
        found.append(json.loads(llama.read_text(encoding="utf-8")).get("versions", ""))
    return ", ".join(f for f in found if f)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=["ingest", "query"], help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help="comma-separated subset to run (default: %(default)s); the "
                             "table keeps the last results of the others; '' only redraws it")
    parser.add_argument("--no-llamaindex", action="store_true",
                        help="skip llama-index (it needs its own virtualenv)")
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(args.child, args.phase, args.work, args.out))
        return 0
    wanted = [s for s in args.systems.split(",") if s]
    # --systems "" redraws the table from the saved results without touching the corpus
    workload = (Workload.load(WORK) if not wanted and (WORK / "workload.json").exists()
                else prepare())
    documents = json.loads((WORK / "workload.json").read_text(encoding="utf-8"))["documents"]
    fresh: dict[str, dict[str, Any]] = {}
    for key in wanted:
        if key == "llamaindex":
            if args.no_llamaindex:
                continue
            python = llama_python()
            if python is None:
                fresh[key] = {"name": "llama-index", "error": "its virtualenv could not be made"}
                continue
            fresh[key] = run_system(key, python=str(python),
                                    script=Path(__file__).with_name("peer_llamaindex.py"),
                                    extra=[])
        else:
            from peer_systems import SHARES_INDEX

            fresh[key] = run_system(key, python=sys.executable, script=Path(__file__),
                                    extra=["--child", key], phases=(
                                        ("query",) if key in SHARES_INDEX else ("ingest", "query")))
    # The table: this run's results, and for the systems not run this time, their last ones
    # (a subset run with --systems refreshes part of the table).
    results = []
    for key in dict.fromkeys([*DEFAULT_SYSTEMS, *wanted]):
        saved = WORK / f"{key}.json"
        if key in fresh:
            results.append(fresh[key])
        elif saved.exists():
            results.append(json.loads(saved.read_text(encoding="utf-8")))
    body, ok = report(results, workload, documents)
    write_section("peers", body)
    print(body)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
