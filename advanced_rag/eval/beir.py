"""Read a BEIR-layout dataset: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

SciFact's ``queries.jsonl`` also carries, for its train/dev claims, the cited evidence
documents in ``metadata``. :func:`evidence_qrels` turns those into judgments for the
queries *outside* the test qrels, so fusion can be tuned on queries never reported.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .metrics import Qrels


@dataclass(frozen=True, slots=True)
class BeirDataset:
    root: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    query_metadata: dict[str, dict[str, object]]

    @property
    def corpus_path(self) -> Path:
        return self.root / "corpus.jsonl"


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id  corpus-id  score`` rows; a header line is skipped when present."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


def load_beir(root: str | Path, split: str = "test") -> BeirDataset:
    """Queries and qrels of a BEIR dataset folder (the corpus is streamed separately)."""
    folder = Path(root)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    for needed in (folder / "corpus.jsonl", folder / "queries.jsonl", qrels_path):
        if not needed.is_file():
            raise InputError(f"{needed} is missing: expected a BEIR folder with corpus.jsonl, "
                             f"queries.jsonl and qrels/{split}.tsv")
    queries: dict[str, str] = {}
    metadata: dict[str, dict[str, object]] = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                queries[str(row["_id"])] = str(row["text"])
                if isinstance(row.get("metadata"), dict) and row["metadata"]:
                    metadata[str(row["_id"])] = row["metadata"]
    return BeirDataset(folder, queries, read_qrels(qrels_path), metadata)


def evidence_qrels(dataset: BeirDataset) -> Qrels:
    """Judgments from SciFact-style query metadata (``{doc_id: [evidence...]}``) for the
    queries that are *not* in the dataset's qrels: a tuning set disjoint from the test set."""
    held_out = set(dataset.qrels)
    out: dict[str, dict[str, int]] = {}
    for query_id, meta in dataset.query_metadata.items():
        if query_id in held_out:
            continue
        docs = {str(doc_id): 1 for doc_id, evidence in meta.items() if evidence}
        if docs:
            out[query_id] = docs
    return out
