"""Index a BEIR corpus through the pipeline and score retrieval runs against judgments.

Shared by ``advanced-rag eval retrieval``, ``advanced-rag tune`` and the benchmarks, so
every figure they print comes from the same code path users call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..pipeline import AdvancedRAGPipeline
from ..sources import read_jsonl
from ..types import Document, IngestReport, RetrievalResult, SearchType
from .beir import BeirDataset
from .metrics import Qrels, RankingScores, dedupe_ranked, evaluate_run

EVAL_TENANT = "eval"


async def index_corpus(rag: AdvancedRAGPipeline, dataset: BeirDataset, *, tenant: str = EVAL_TENANT,
                       progress: Callable[[int], None] | None = None) -> IngestReport:
    """Ingest ``corpus.jsonl`` (incremental: a second call writes nothing)."""
    documents = [d for d in read_jsonl(dataset.corpus_path) if isinstance(d, Document)]
    return await rag.ingest(documents, tenant=tenant, progress=progress)


async def retrieve_all(rag: AdvancedRAGPipeline, queries: Mapping[str, str], *,
                       search_type: SearchType, top_k: int, tenant: str = EVAL_TENANT,
                       concurrency: int = 1, progress: Callable[[int], None] | None = None
                       ) -> dict[str, RetrievalResult]:
    """``retrieve()`` every query (through the audited pipeline path users call)."""
    semaphore = asyncio.Semaphore(concurrency)
    results: dict[str, RetrievalResult] = {}

    async def one(query_id: str, text: str) -> None:
        async with semaphore:
            results[query_id] = await rag.retrieve(text, tenant=tenant, top_k=top_k,
                                                   search_type=search_type)
        if progress:
            progress(1)

    await asyncio.gather(*(one(q, t) for q, t in queries.items()))
    return results


async def run_queries(rag: AdvancedRAGPipeline, queries: Mapping[str, str], *,
                      search_type: SearchType, depth: int = 100, tenant: str = EVAL_TENANT,
                      concurrency: int = 1,
                      progress: Callable[[int], None] | None = None) -> dict[str, list[str]]:
    """Document rankings (each document at its best chunk's rank) for every query."""
    results = await retrieve_all(rag, queries, search_type=search_type, top_k=depth,
                                 tenant=tenant, concurrency=concurrency, progress=progress)
    return {q: dedupe_ranked([h.doc_id for h in r.hits]) for q, r in results.items()}


@dataclass(frozen=True, slots=True)
class EvalRow:
    """One configuration's scores on one query set."""

    label: str
    scores: RankingScores


async def evaluate(rag: AdvancedRAGPipeline, queries: Mapping[str, str], qrels: Qrels, *,
                   search_type: SearchType, label: str, depth: int = 100,
                   tenant: str = EVAL_TENANT) -> EvalRow:
    judged = {q: queries[q] for q in qrels if q in queries}
    run = await run_queries(rag, judged, search_type=search_type, depth=depth, tenant=tenant)
    return EvalRow(label, evaluate_run(qrels, run))


def format_table(rows: Sequence[EvalRow], *, extra: Mapping[str, str] | None = None) -> str:
    """A Markdown table of nDCG@10, Recall@100 and MRR@10 (plus an optional note column)."""
    lines = ["| run | nDCG@10 | Recall@100 | MRR@10 | queries |" + (" note |" if extra else ""),
             "|---|---|---|---|---|" + ("---|" if extra else "")]
    for row in rows:
        s = row.scores
        note = f" {extra.get(row.label, '')} |" if extra else ""
        lines.append(f"| {row.label} | {s.ndcg_at_10:.4f} | {s.recall_at_100:.4f} | "
                     f"{s.mrr_at_10:.4f} | {s.queries} |{note}")
    return "\n".join(lines)
