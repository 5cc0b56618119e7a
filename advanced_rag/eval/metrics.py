"""Ranking metrics (pure functions), as BEIR/trec_eval compute them.

``qrels`` map query id → {doc id: graded relevance}; ``run`` maps query id → ranked doc ids.
Queries without a positive judgment are skipped, as trec_eval does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Sequence[str]]


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with linear gains (trec_eval's ``ndcg_cut``)."""
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 100) -> float:
    positives = {doc for doc, g in relevant.items() if g > 0}
    if not positives:
        return 0.0
    return len(positives.intersection(ranked[:k])) / len(positives)


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    for rank, doc in enumerate(ranked[:k]):
        if relevant.get(doc, 0) > 0:
            return 1.0 / (rank + 1)
    return 0.0


@dataclass(frozen=True, slots=True)
class RankingScores:
    """Mean metrics over the judged queries of a run."""

    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    queries: int


def evaluate_run(qrels: Qrels, run: Run) -> RankingScores:
    """Mean nDCG@10, Recall@100 and MRR@10 over queries with at least one positive judgment."""
    judged = [q for q, rels in qrels.items() if any(g > 0 for g in rels.values())]
    if not judged:
        raise ValueError("no query has a positive judgment")
    ndcg = recall = mrr = 0.0
    for query_id in judged:
        ranked = run.get(query_id, ())
        rels = qrels[query_id]
        ndcg += ndcg_at_k(ranked, rels, 10)
        recall += recall_at_k(ranked, rels, 100)
        mrr += mrr_at_k(ranked, rels, 10)
    n = len(judged)
    return RankingScores(ndcg / n, recall / n, mrr / n, n)


def dedupe_ranked(doc_ids: Sequence[str]) -> list[str]:
    """Document ranking from a chunk ranking: each document at its best chunk's rank (max-pool)."""
    seen: set[str] = set()
    out: list[str] = []
    for doc in doc_ids:
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
    return out
