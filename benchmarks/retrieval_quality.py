"""Retrieval quality on SciFact and the MS MARCO sample: keyword, dense, hybrid RRF, hybrid
weighted (alpha tuned on SciFact's *training* claims, never on the reported test queries).

    python benchmarks/retrieval_quality.py            # index (once) + evaluate, ~15 min cold

Indexing and evaluation run in separate processes: Milvus Lite searches far slower in a
process that has just inserted rows (it compacts in the background). Writes the
``retrieval_quality`` section of docs/benchmarks.md. Exit 1 when a bar is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import BENCH_DIR, DATA, environment_line, write_section  # noqa: E402

from advanced_rag import AdvancedRAGPipeline, SearchType  # noqa: E402
from advanced_rag.cli.evaluate import eval_config  # noqa: E402
from advanced_rag.config import Bm25Settings, validate_config  # noqa: E402
from advanced_rag.eval.beir import evidence_qrels, load_beir  # noqa: E402
from advanced_rag.eval.runner import EvalRow, evaluate, format_table, index_corpus  # noqa: E402
from advanced_rag.store.milvus import analyzer_params  # noqa: E402

DATASETS = {"scifact": DATA / "retrieval" / "scifact",
            "msmarco-sample": DATA / "retrieval" / "msmarco-sample"}
PUBLISHED = {"scifact": "published on SciFact: BM25 0.665 (BEIR), all-MiniLM-L6-v2 dense ~0.645, "
                        "BM25 + MiniLM-L6 cross-encoder rerank 0.688"}
ALPHAS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
RRF_KS = [10, 20, 40, 60, 100]
BAR_HYBRID, BAR_KEYWORD = 0.70, 0.64
ANALYZERS = {
    "standard (lowercase)": {"tokenizer": "standard", "filter": ["lowercase"]},
    # Lite takes the server's "_english_" shorthand literally and ignores stemmer filters
    # (milvus_lite/analyzer/factory.py), so the stop words are spelled out and no stemmer.
    "standard + Lucene's 33 English stop words (the default)": analyzer_params(Bm25Settings()),
    "english (built-in analyzer type)": {"type": "english"},
}


def base_config():  # type: ignore[no-untyped-def]
    return validate_config({"milvus": {"uri": str(BENCH_DIR / "quality.db")},
                            "data_dir": str(BENCH_DIR)})


async def index(name: str) -> None:
    dataset = load_beir(DATASETS[name])
    config = eval_config(base_config(), dataset.root)
    began = time.perf_counter()
    async with AdvancedRAGPipeline.from_config(config) as rag:
        from tqdm import tqdm

        total = sum(1 for _ in dataset.corpus_path.open(encoding="utf-8"))
        with tqdm(total=total, desc=f"index {name}", file=sys.stderr) as bar:
            report = await index_corpus(rag, dataset, progress=bar.update)
        print(f"{name}: {len(report.new)} new / {len(report.unchanged)} unchanged documents, "
              f"{report.chunks_written} chunks written in {time.perf_counter() - began:.0f} s")
        if name == "scifact":
            await asyncio.to_thread(build_analyzer_variants, config.milvus.collection)


def _analyzer_collection(i: int) -> str:
    return f"bm25_analyzer_{i}"


def build_analyzer_variants(source_collection: str) -> None:
    """BM25-only copies of the indexed chunk texts under each analyzer (no embeddings needed)."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    client = MilvusClient(str(BENCH_DIR / "quality.db"))
    rows = []
    iterator = client.query_iterator(source_collection, batch_size=2000,
                                     output_fields=["chunk_id", "doc_id", "text"])
    while batch := iterator.next():
        rows.extend(batch)
    iterator.close()
    for i, params in enumerate(ANALYZERS.values()):
        name = _analyzer_collection(i)
        if client.has_collection(name):
            continue
        schema = client.create_schema(auto_id=False)
        schema.add_field("chunk_id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=512)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        try:
            schema.add_field("text", DataType.VARCHAR, max_length=65535, enable_analyzer=True,
                             analyzer_params=params)
            schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                         input_field_names=["text"],
                                         output_field_names=["sparse"]))
            index_params = client.prepare_index_params()
            index_params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX",
                                   metric_type="BM25")
            client.create_collection(name, schema=schema, index_params=index_params)
            for start in range(0, len(rows), 2000):
                client.insert(name, [{k: r[k] for k in ("chunk_id", "doc_id", "text")}
                                     for r in rows[start:start + 2000]])
        except Exception as exc:  # Lite refuses some analyzers: record why
            (BENCH_DIR / f"{name}.refused").write_text(str(exc)[:300], encoding="utf-8")
    client.close()


def evaluate_analyzers(dataset) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    from pymilvus import MilvusClient

    from advanced_rag.eval.metrics import dedupe_ranked, evaluate_run

    client = MilvusClient(str(BENCH_DIR / "quality.db"))
    out = []
    for i, label in enumerate(ANALYZERS):
        name = _analyzer_collection(i)
        refused = BENCH_DIR / f"{name}.refused"
        if refused.exists() or not client.has_collection(name):
            reason = refused.read_text(encoding="utf-8") if refused.exists() else "not built"
            out.append((label, f"refused by Milvus Lite: {reason.splitlines()[0][:160]}"))
            continue
        client.load_collection(name)
        run = {}
        for query_id in dataset.qrels:
            hits = client.search(name, data=[dataset.queries[query_id]], anns_field="sparse",
                                 limit=100, output_fields=["doc_id"])[0]
            run[query_id] = dedupe_ranked([h["entity"]["doc_id"] for h in hits])
        out.append((label, f"nDCG@10 {evaluate_run(dataset.qrels, run).ndcg_at_10:.4f}"))
    client.close()
    return out


async def measure() -> int:
    sections = [f"## Retrieval quality\n\n`python benchmarks/retrieval_quality.py` — {environment_line()}.\n"
                "Packaged all-MiniLM-L6-v2, Milvus Lite, chunks of at most 200 tokens headed by the "
                "document title, document-level scoring (each document at its best chunk's rank, "
                "100 chunks deep). Hybrid = Milvus `hybrid_search` (dense HNSW + built-in BM25).\n"]
    failures = []
    tuned: dict[str, object] = {}
    for name, root in DATASETS.items():
        dataset = load_beir(root)
        config = eval_config(base_config(), dataset.root)
        async with AdvancedRAGPipeline.from_config(config) as rag:
            if name == "scifact":
                train = evidence_qrels(dataset)
                grid = [("weighted", {"fusion": "weighted", "hybrid_alpha": a}) for a in ALPHAS] + \
                       [("rrf", {"fusion": "rrf", "rrf_k": k}) for k in RRF_KS]
                tune_rows = []
                for kind, settings in grid:
                    label = f"{kind} " + ", ".join(f"{k}={v}" for k, v in settings.items()
                                                    if k != "fusion")
                    row = await evaluate(rag.with_settings(**settings), dataset.queries, train,
                                         search_type=SearchType.HYBRID, label=label)
                    tune_rows.append((kind, settings, row))
                    print(f"  tune {label}: {row.scores.ndcg_at_10:.4f}", flush=True)
                best_w = max((r for r in tune_rows if r[0] == "weighted"),
                             key=lambda r: r[2].scores.ndcg_at_10)
                best_r = max((r for r in tune_rows if r[0] == "rrf"),
                             key=lambda r: r[2].scores.ndcg_at_10)
                tuned = {"weighted": best_w[1], "rrf": best_r[1]}
                sections.append(
                    f"### Fusion tuning (SciFact training claims, {best_w[2].scores.queries} "
                    "queries, disjoint from the 300 test queries)\n\n"
                    "Judgments: the evidence documents in `queries.jsonl` metadata of claims that "
                    "are not in `qrels/test.tsv`.\n\n"
                    + format_table([r[2] for r in tune_rows])
                    + f"\n\nChosen: weighted `hybrid_alpha={best_w[1]['hybrid_alpha']}`, "
                      f"RRF `rrf_k={best_r[1]['rrf_k']}`.\n")
            rows: list[EvalRow] = []
            for kind in (SearchType.KEYWORD, SearchType.DENSE):
                rows.append(await evaluate(rag, dataset.queries, dataset.qrels, search_type=kind,
                                           label=kind.value))
            rows.append(await evaluate(rag.with_settings(fusion="rrf", rrf_k=60), dataset.queries,
                                       dataset.qrels, search_type=SearchType.HYBRID,
                                       label="hybrid RRF k=60 (fixed)"))
            rrf_k = tuned["rrf"]["rrf_k"]  # type: ignore[index]
            rows.append(await evaluate(rag.with_settings(fusion="rrf", rrf_k=rrf_k),
                                       dataset.queries, dataset.qrels,
                                       search_type=SearchType.HYBRID,
                                       label=f"hybrid RRF k={rrf_k} (tuned)"))
            alpha = tuned["weighted"]["hybrid_alpha"]  # type: ignore[index]
            rows.append(await evaluate(rag.with_settings(fusion="weighted", hybrid_alpha=alpha),
                                       dataset.queries, dataset.qrels,
                                       search_type=SearchType.HYBRID,
                                       label=f"hybrid weighted alpha={alpha} (tuned)"))
        judged = rows[0].scores.queries
        text = (f"### {name} (test split, {judged} judged queries)\n\n" + format_table(rows) + "\n")
        if name in PUBLISHED:
            text += f"\n{PUBLISHED[name]}.\n"
        if name != "scifact":
            text += "\nNo training judgments here: the fusion settings are SciFact's, transferred.\n"
        if name == "scifact":
            hybrid, keyword = rows[-1].scores.ndcg_at_10, rows[0].scores.ndcg_at_10
            verdict = []
            for label, value, bar in (("hybrid (tuned weighted)", hybrid, BAR_HYBRID),
                                      ("keyword", keyword, BAR_KEYWORD)):
                ok = value >= bar
                verdict.append(f"- bar {label} nDCG@10 >= {bar:.2f}: {value:.4f} "
                               f"{'PASS' if ok else 'FAIL'}")
                if not ok:
                    failures.append(label)
            analyzers = await asyncio.to_thread(evaluate_analyzers, dataset)
            text += "\n" + "\n".join(verdict) + "\n\nBM25 analyzer check (keyword only, same "\
                    "chunks):\n\n| analyzer | result |\n|---|---|\n" + "\n".join(
                        f"| {label} | {result} |" for label, result in analyzers) + "\n"
        sections.append(text)
        print(text, flush=True)
    body = "\n".join(sections)
    write_section("retrieval_quality", body)
    print(f"wrote docs/benchmarks.md ({'bars met' if not failures else 'FAILED: ' + ', '.join(failures)})")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["all", "index", "evaluate"], default="all")
    args = parser.parse_args()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    if args.phase == "index":
        for name in DATASETS:
            asyncio.run(index(name))
        return 0
    if args.phase == "evaluate":
        return asyncio.run(measure())
    me = [sys.executable, __file__]
    subprocess.run([*me, "--phase", "index"], check=True)
    return subprocess.run([*me, "--phase", "evaluate"]).returncode


if __name__ == "__main__":
    raise SystemExit(main())
